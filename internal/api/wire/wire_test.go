package wire

import (
	"encoding/json"
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

// TestNames pins the JSON names users see (a rename is a change of the
// API, to be made here on purpose).
func TestNames(t *testing.T) {
	pool := EnvPool{Ready: 1, Built: 1, Taken: 1, OnDemand: 1, Failures: 1, MeanBuildUs: 1}
	for _, c := range []struct {
		v    any
		want string
	}{
		{Function{Env: map[string]string{"K": "v"}},
			`{"name":"","runtime":"","handler":"","code_digest":"","memory_mb":0,"timeout_ms":0,"env":{"K":"v"},"max_instances":0,"network":"","uid_slot":0,"created_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z","code_path":"","template":"","image":""}`},
		{Instances{Instances: []Instance{{}}, Template: Template{Status: "ready", Pid: 1, KilledAtFreeze: 1, PSSKB: 1, Pool: &pool}, Image: Image{Status: "ready", Dir: "d", PagesBytes: 1, PagesApparent: 1, PlanEntries: 1, WorkingSet: 1}},
			`{"instances":[{"id":"","boot":"","state":"","pid":0,"pss_kb":0}],"template":{"status":"ready","pid":1,"killed_at_freeze":1,"pss_kb":1,"pool":{"ready":1,"built":1,"taken":1,"on_demand":1,"failures":1,"mean_build_us":1}},"image":{"status":"ready","dir":"d","pages_bytes":1,"pages_apparent_bytes":1,"plan_entries":1,"working_set_bytes":1}}`},
		{Instances{Instances: []Instance{}, Template: Template{Status: "none"}, Image: Image{Status: "building"}},
			`{"instances":[],"template":{"status":"none"},"image":{"status":"building"}}`},
		{DeployRequest{Runtime: "python", Handler: "main.handler"}, `{"runtime":"python","handler":"main.handler"}`},
		{ErrorBody{Error: ErrorDetail{Type: "NotFound", Message: "m"}}, `{"error":{"type":"NotFound","message":"m"}}`},
		{Drained{2}, `{"drained":2}`},
		{Floor{[]int64{1}}, `{"samples_us":[1]}`},
		{FunctionList{[]Function{}}, `{"functions":[]}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%T:\n got %s %v\nwant %s", c.v, b, err, c.want)
		}
	}
}
