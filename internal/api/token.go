package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// tokenBytes is the entropy of a token; it is written as hex.
const tokenBytes = 32

// LoadOrCreateToken returns the API token kept in stateDir/api.token,
// creating it on first start: 32 random bytes as hex, mode 0600, written
// atomically (temp file, fsync, rename, fsync of the dir) so a daemon
// killed mid-write leaves no token or the whole token. An existing token
// is reused (clients keep working across restarts) and its mode is
// tightened to 0600; a file that is not a token is an error, not
// silently replaced.
func LoadOrCreateToken(stateDir string) (string, error) {
	path := filepath.Join(stateDir, wire.TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(b))
		if !validToken(tok) {
			return "", fmt.Errorf("%s is not an API token (want %d hex digits); remove it to have a new one made", path, 2*tokenBytes)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			return "", err
		}
		return tok, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read API token: %w", err)
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write API token: %w", err)
	}
	return tok, nil
}

func validToken(tok string) bool {
	if len(tok) != 2*tokenBytes {
		return false
	}
	_, err := hex.DecodeString(tok)
	return err == nil
}

// authorized reports whether r carries "Authorization: Bearer <token>",
// compared in constant time.
func (s *Server) authorized(r *http.Request) bool {
	if s.token == "" {
		return false // a server without a token admits nobody
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.token)) == 1
}

// unauthorized is the error of a request without the right token: it
// says where the token is.
func (s *Server) unauthorized(r *http.Request) error {
	why := "no API token"
	if r.Header.Get("Authorization") != "" {
		why = "wrong API token"
	}
	return fmt.Errorf("%s: send \"Authorization: Bearer <token>\"; the token is in %s on the daemon's host (root only); the CLI and bench read $CATALYZER_API_TOKEN, --token-file, or <--state-dir>/%s: %w",
		why, filepath.Join(s.p.StateDir(), wire.TokenFile), wire.TokenFile, errdefs.ErrUnauthorized)
}
