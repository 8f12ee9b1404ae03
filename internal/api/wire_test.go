package api

import (
	"reflect"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// fill sets every field of the struct v points to (recursively, through
// pointers) to a non-zero value.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Int, reflect.Int64:
			if f.Type() == reflect.TypeOf(time.Duration(0)) {
				f.SetInt(int64(3 * time.Microsecond))
			} else {
				f.SetInt(7)
			}
		case reflect.Uint64:
			f.SetUint(7)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Map:
			f.Set(reflect.MakeMap(f.Type()))
			f.SetMapIndex(reflect.ValueOf("K"), reflect.ValueOf("v"))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
			fill(t, f.Elem())
		case reflect.Struct:
			if f.Type() == reflect.TypeOf(time.Time{}) {
				f.Set(reflect.ValueOf(time.Unix(1, 0)))
			} else {
				fill(t, f)
			}
		default:
			t.Fatalf("fill: field %s of kind %s", v.Type().Field(i).Name, f.Kind())
		}
	}
}

// zeros names the fields of struct v (recursively) left zero.
func zeros(v reflect.Value, prefix string) []string {
	var out []string
	for i := 0; i < v.NumField(); i++ {
		f, name := v.Field(i), prefix+v.Type().Field(i).Name
		switch {
		case f.IsZero():
			out = append(out, name)
		case f.Kind() == reflect.Pointer && f.Elem().Kind() == reflect.Struct:
			out = append(out, zeros(f.Elem(), name+".")...)
		}
	}
	return out
}

// TestWireConversions: every field of the platform's and the boot
// engines' values reaches its wire type, and every wire field is set
// (a field added on one side only fails here).
func TestWireConversions(t *testing.T) {
	var req wire.DeployRequest
	fill(t, reflect.ValueOf(&req).Elem())
	if z := zeros(reflect.ValueOf(deployRequest(req)), ""); len(z) > 0 {
		t.Errorf("deployRequest leaves %v unset", z)
	}
	var f platform.Function
	fill(t, reflect.ValueOf(&f).Elem())
	if z := zeros(reflect.ValueOf(functionView(f, "/code", "ready", "ready")), ""); len(z) > 0 {
		t.Errorf("functionView leaves %v unset", z)
	}
	var in platform.InstanceInfo
	fill(t, reflect.ValueOf(&in).Elem())
	if z := zeros(reflect.ValueOf(instanceView(in)), ""); len(z) > 0 {
		t.Errorf("instanceView leaves %v unset", z)
	}
	tpl := boot.TemplateInfo{Pool: &sandbox.PoolStats{}}
	fill(t, reflect.ValueOf(&tpl).Elem())
	tv := templateView(tpl)
	if z := zeros(reflect.ValueOf(tv), ""); len(z) > 0 {
		t.Errorf("templateView leaves %v unset", z)
	}
	if tv.Pool.MeanBuildUs != 3 {
		t.Errorf("mean_build_us = %d, want 3 (µs)", tv.Pool.MeanBuildUs)
	}
	if templateView(boot.TemplateInfo{Status: "building"}).Pool != nil {
		t.Error("a template without a pool shows one")
	}
	var img boot.ImageInfo
	fill(t, reflect.ValueOf(&img).Elem())
	if z := zeros(reflect.ValueOf(imageView(img)), ""); len(z) > 0 {
		t.Errorf("imageView leaves %v unset", z)
	}
	// Field for field: a field added to an inner type is either
	// converted or listed here as one the API does not show.
	for _, c := range []struct {
		wire, inner any
		extra       []string // wire fields the handler adds
	}{
		{wire.DeployRequest{}, platform.DeployRequest{}, nil},
		{wire.Function{}, platform.Function{}, []string{"CodePath", "Template", "Image"}},
		{wire.Instance{}, platform.InstanceInfo{}, nil},
		{wire.Image{}, boot.ImageInfo{}, nil},
		{wire.Template{}, boot.TemplateInfo{}, nil},
		{wire.EnvPool{}, sandbox.PoolStats{}, nil},
	} {
		wt, it := reflect.TypeOf(c.wire), reflect.TypeOf(c.inner)
		if n := wt.NumField() - len(c.extra); n != it.NumField() {
			t.Errorf("%s has %d fields for %s's %d: convert the new ones", wt, n, it, it.NumField())
		}
		for _, e := range c.extra {
			if _, ok := wt.FieldByName(e); !ok {
				t.Errorf("%s lacks %s", wt, e)
			}
		}
	}
}
