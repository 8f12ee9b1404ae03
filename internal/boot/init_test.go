package boot

import "testing"

// TestBootInitTemplate: only the boot of a fork template (Scratch.boot
// with template set, as Fork builds one) tells the agent so; a scratch
// boot's init is InitMsg's, unmarked.
func TestBootInitTemplate(t *testing.T) {
	f := Function{Name: "f", Runtime: "java", Handler: "fn.H::h", OutputLimit: 7}
	scratch, tpl := bootInit(f, false), bootInit(f, true)
	if scratch.Template || !tpl.Template {
		t.Fatalf("template flag: scratch %v, template %v; want false, true", scratch.Template, tpl.Template)
	}
	tpl.Template = false
	if tpl != scratch || scratch != InitMsg(f, CodeMount) {
		t.Fatalf("a template's init differs from scratch's beyond the flag: %+v vs %+v", tpl, scratch)
	}
}
