package wire

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestSnakeCase: every field of every wire type has an explicit
// snake_case JSON name (an untagged field would go out Go-cased).
func TestSnakeCase(t *testing.T) {
	for _, v := range []any{
		DeployRequest{}, Function{}, FunctionList{}, Instances{}, Instance{},
		Template{}, EnvPool{}, Image{}, Drained{}, Floor{}, Health{}, ErrorBody{}, ErrorDetail{},
	} {
		typ := reflect.TypeOf(v)
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous || !snake.MatchString(name) {
				t.Errorf("%s.%s: json tag %q, want an explicit snake_case name (no embedding)", typ.Name(), f.Name, tag)
			}
		}
	}
}
