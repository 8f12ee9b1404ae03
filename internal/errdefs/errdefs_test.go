package errdefs

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"strings"
	"testing"
)

// values parses this package's source for every exported Err* variable,
// so that a value added without a row fails TestTableComplete.
func values(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "errdefs.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Every layer imports this package, the native function SDK too: it
	// must stay free of heavy imports (net/http for status constants).
	for _, imp := range f.Imports {
		if imp.Path.Value != `"errors"` {
			t.Errorf("errdefs imports %s; keep it to \"errors\"", imp.Path.Value)
		}
	}
	var names []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, s := range gd.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "Err") {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}

// byName maps each value's name to the value; a value missing here fails
// the test too.
var byName = map[string]error{
	"ErrInvalid": ErrInvalid, "ErrUnauthorized": ErrUnauthorized, "ErrForbidden": ErrForbidden,
	"ErrNotFound": ErrNotFound, "ErrConflict": ErrConflict, "ErrTooLarge": ErrTooLarge,
	"ErrUnavailable": ErrUnavailable, "ErrNotReady": ErrNotReady, "ErrShutdown": ErrShutdown,
	"ErrFunction": ErrFunction, "ErrProtocol": ErrProtocol, "ErrNotSupported": ErrNotSupported,
}

func TestTableComplete(t *testing.T) {
	names := values(t)
	if len(names) != len(byName) || len(names) != len(Table) {
		t.Errorf("%d values in the source, %d in byName, %d rows in Table: give each value one row", len(names), len(byName), len(Table))
	}
	types := map[string]bool{}
	for _, name := range names {
		v, ok := byName[name]
		if !ok {
			t.Errorf("%s: not in byName (add it there and to Table)", name)
			continue
		}
		rows := 0
		for _, r := range Table {
			if r.Err == v {
				rows++
				if r.Status < 400 || r.Status > 599 || r.Type == "" {
					t.Errorf("%s: row %+v: want a 4xx/5xx status and a type", name, r)
				}
				if types[r.Type] {
					t.Errorf("%s: type %q used twice", name, r.Type)
				}
				types[r.Type] = true
			}
		}
		if rows != 1 {
			t.Errorf("%s: %d rows in Table, want 1", name, rows)
		}
		// Wrapped, it classifies as its own row: no row before it
		// catches it.
		if k := Classify(fmt.Errorf("op: %w", v)); k.Err != v {
			t.Errorf("%s wrapped classifies as %+v", name, k)
		}
	}
}

type typed struct{ typ string }

func (e typed) Error() string        { return "typed" }
func (e typed) ErrorType() string    { return e.typ }
func (e typed) Is(target error) bool { return target == ErrFunction }

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		typ    string
	}{
		{errors.New("boom"), http.StatusInternalServerError, "InternalError"},
		{fmt.Errorf("deploy: platform is shut down: %w", ErrShutdown), http.StatusServiceUnavailable, "ShuttingDown"},
		{fmt.Errorf("max_instances: %w", ErrUnavailable), http.StatusTooManyRequests, "TooManyRequests"},
		{fmt.Errorf("bad frame: %w: %w", ErrProtocol, ErrFunction), http.StatusBadGateway, "ProtocolError"},
		{fmt.Errorf("invoke: %w", typed{"ValueError"}), http.StatusBadGateway, "ValueError"},
		{typed{""}, http.StatusBadGateway, "FunctionError"},
	} {
		if k := Classify(c.err); k.Status != c.status || k.Type != c.typ {
			t.Errorf("Classify(%v) = %d %s, want %d %s", c.err, k.Status, k.Type, c.status, c.typ)
		}
	}
}
