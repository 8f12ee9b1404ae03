package agent

import (
	"strings"
	"testing"
)

// TestInitTemplateOnWire: the template flag is on the wire only when set,
// so a scratch boot's init is byte for byte what older agents read.
func TestInitTemplateOnWire(t *testing.T) {
	for _, tpl := range []bool{false, true} {
		f, err := Encode(TypeInit, Init{Version: ProtocolVersion, Function: "f", Template: tpl})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(f.Payload), `"template":true`); got != tpl {
			t.Errorf("template %v: payload %s", tpl, f.Payload)
		}
		if !tpl && strings.Contains(string(f.Payload), "template") {
			t.Errorf("scratch init names the flag: %s", f.Payload)
		}
		var m Init
		if err := Decode(f, TypeInit, &m); err != nil || m.Template != tpl {
			t.Errorf("decode: %+v %v", m, err)
		}
	}
}
