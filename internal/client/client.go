// Package client is the Go client of the daemon's HTTP API, used by the
// CLI and the benchmark. It speaks the API's wire types (package wire)
// and knows nothing of the daemon's inner ones. Errors from the daemon
// come back as *APIError carrying the status code and the server's error
// type and message.
package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/catalyzer/catalyzer/internal/api/wire"
)

// Client talks to one daemon.
type Client struct {
	Base  string // e.g. "http://127.0.0.1:8470"
	Token string // the daemon's API token, sent as "Authorization: Bearer"
	HTTP  *http.Client
}

// New returns a client for addr ("host:port" or a URL) that authenticates
// with token (see ResolveToken).
func New(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Base: strings.TrimRight(addr, "/"), Token: token, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// TokenEnv is the environment variable that carries the API token.
const TokenEnv = "CATALYZER_API_TOKEN"

// ResolveToken finds the daemon's API token: $CATALYZER_API_TOKEN, else
// the file tokenFile when it is set, else <stateDir>/api.token (readable
// by root on the daemon's host).
func ResolveToken(tokenFile, stateDir string) (string, error) {
	if t := strings.TrimSpace(os.Getenv(TokenEnv)); t != "" {
		return t, nil
	}
	path := tokenFile
	if path == "" {
		path = filepath.Join(stateDir, wire.TokenFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no API token: %v (set $%s, give --token-file, or --state-dir of the daemon; serve writes the token to <state-dir>/%s)", err, TokenEnv, wire.TokenFile)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("no API token: %s is empty", path)
	}
	return t, nil
}

// APIError is an error answered by the daemon.
type APIError struct {
	Status int
	wire.ErrorDetail
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Type, e.Status, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w (is `catalyzer serve` running there? set --addr)", method, c.Base+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode >= 400 {
		var eb wire.ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error.Type == "" {
			eb.Error = wire.ErrorDetail{Type: "HTTPError", Message: strings.TrimSpace(string(b))}
		}
		return resp, b, &APIError{Status: resp.StatusCode, ErrorDetail: eb.Error}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp, b, fmt.Errorf("decode response of %s %s: %w", method, path, err)
		}
	}
	return resp, b, nil
}

// Deploy creates or replaces a function.
func (c *Client) Deploy(ctx context.Context, name string, r wire.DeployRequest) (wire.Function, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return wire.Function{}, err
	}
	var f wire.Function
	_, _, err = c.do(ctx, http.MethodPut, "/v1/functions/"+url.PathEscape(name), bytes.NewReader(b), &f)
	return f, err
}

// List lists the deployed functions.
func (c *Client) List(ctx context.Context) ([]wire.Function, error) {
	var out wire.FunctionList
	_, _, err := c.do(ctx, http.MethodGet, "/v1/functions", nil, &out)
	return out.Functions, err
}

// Get shows one function.
func (c *Client) Get(ctx context.Context, name string) (wire.Function, error) {
	var f wire.Function
	_, _, err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name), nil, &f)
	return f, err
}

// Delete removes a function.
func (c *Client) Delete(ctx context.Context, name string) error {
	_, _, err := c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil, nil)
	return err
}

// Invocation is what one invoke returned.
type Invocation struct {
	Output   json.RawMessage
	Boot     string
	Reused   bool
	BootUs   int64
	AcceptUs int64
	// HandlerUs is how long the handler ran (entry to exit, µs).
	HandlerUs int64
	Phases    map[string]int64 // µs
	Order     []string         // phase names in order
	Instance  string
	Stdout    string
	Stderr    string
	// LogsTruncated: the instance sent more log frames than the daemon
	// keeps per invocation.
	LogsTruncated bool
	ClientUs      int64 // round trip measured by the client
}

// Invoke invokes name with event (nil = {}) in boot mode ("" = auto). A
// function error is an *APIError with Status 502; the Invocation still
// carries the boot headers.
func (c *Client) Invoke(ctx context.Context, name, boot string, event []byte) (Invocation, error) {
	q := url.Values{}
	if boot != "" {
		q.Set("boot", boot)
	}
	return c.InvokeQuery(ctx, name, q, event)
}

// InvokeQuery is Invoke with the query parameters q (boot, prefetch).
func (c *Client) InvokeQuery(ctx context.Context, name string, q url.Values, event []byte) (Invocation, error) {
	path := "/v1/functions/" + url.PathEscape(name) + "/invoke"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	start := time.Now()
	resp, body, err := c.do(ctx, http.MethodPost, path, bytes.NewReader(event), nil)
	inv := Invocation{ClientUs: time.Since(start).Microseconds()}
	if resp == nil {
		return inv, err
	}
	h := resp.Header
	inv.Boot = h.Get(wire.HeaderBoot)
	inv.Reused = h.Get(wire.HeaderReused) == "true"
	inv.BootUs, _ = strconv.ParseInt(h.Get(wire.HeaderBootUs), 10, 64)
	inv.AcceptUs, _ = strconv.ParseInt(h.Get(wire.HeaderAcceptUs), 10, 64)
	inv.HandlerUs, _ = strconv.ParseInt(h.Get(wire.HeaderHandlerUs), 10, 64)
	inv.Instance = h.Get(wire.HeaderInstance)
	inv.LogsTruncated = h.Get(wire.HeaderLogsTruncated) == "true"
	inv.Stdout = decodeLog(h.Get(wire.HeaderStdout))
	inv.Stderr = decodeLog(h.Get(wire.HeaderStderr))
	if ph := h.Get(wire.HeaderPhases); ph != "" {
		inv.Phases = map[string]int64{}
		for _, kv := range strings.Split(ph, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			inv.Phases[k] = n
			inv.Order = append(inv.Order, k)
		}
	}
	if err == nil {
		inv.Output = body
	}
	return inv, err
}

func decodeLog(s string) string {
	if s == "" {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}

// Instances lists a function's live instances and its template.
func (c *Client) Instances(ctx context.Context, name string) (wire.Instances, error) {
	var v wire.Instances
	_, _, err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name)+"/instances", nil, &v)
	return v, err
}

// Drain destroys a function's idle instances.
func (c *Client) Drain(ctx context.Context, name string) error {
	_, _, err := c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name)+"/instances", nil, nil)
	return err
}

// ForkFloor asks the daemon to measure the fork floor of a function n
// times (see boot.Fork.Floor) and returns the samples in µs.
func (c *Client) ForkFloor(ctx context.Context, name string, event []byte, n int) ([]int64, error) {
	var v wire.Floor
	_, _, err := c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/functions/%s/fork-floor?n=%d", url.PathEscape(name), n), bytes.NewReader(event), &v)
	return v.SamplesUs, err
}
