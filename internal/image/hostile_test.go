package image

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/kobj"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// synth builds a small valid image by hand (no process needed): one
// anonymous VMA of two pages mapped from pages.img, then mod may spoil it.
func synth(mod func(c *compiled)) (meta, plan []byte, pagesSize uint64) {
	c := &compiled{b: ptrace.NewBatch()}
	c.hdr = metaHeader{ExecAddr: 1 << 32, TempAddr: 1<<32 + ptrace.ExecutorRegionSize, TempSize: 0x8000, PagesSize: 3 * pageSize, MainTID: 1}
	copy(c.hdr.Kernel[:], kernelID())
	path := c.b.Space(4096)
	pages := c.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), path, ptrace.Lit(unix.O_RDONLY))
	off, _ := path.DataOffset()
	c.relocs = append(c.relocs, Reloc{Kind: RelocPagesPath, Entry: uint32(pages.Index()), DataOff: uint32(off), Value: 4096})
	c.vmas = []VMA{{Start: 0x10000000, End: 0x10002000, PagesOff: 0, Prot: 3, Kind: VMAAnon}}
	c.b.Add(unix.SYS_MMAP, ptrace.Lit(0x10000000), ptrace.Lit(0x2000), ptrace.Lit(3),
		ptrace.Lit(unix.MAP_PRIVATE|unix.MAP_FIXED), pages.Result(), ptrace.Lit(0))
	c.b.Add(unix.SYS_CLOSE, pages.Result())
	if mod != nil {
		mod(c)
	}
	return encodeMeta(c.hdr, c.vmas, c.relocs, c.fds, nil, c.threads, c.timers, c.signals), encodePlan(append(c.done, c.b)), c.hdr.PagesSize
}

// withThread adds to a synthetic image one thread record and the plan's
// clone3 that re-creates it, as compile does.
func withThread(c *compiled) {
	st := ptrace.ThreadState{NSTID: 7, Comm: "worker", TIDAddress: 0x10000100, SigMask: 1 << 9,
		Caps: ptrace.ThreadCaps{Permitted: 3, Effective: 1, Bounding: 0xff}}
	st.Regs.Rip, st.Regs.Rsp, st.Regs.Fs_base = 0x10000010, 0x10001ff0, 0x10001000
	binary.LittleEndian.PutUint32(st.AltStack[ptrace.StackTFlags:], ptrace.SSDisable)
	c.threads = append(c.threads, st)
	for _, th := range ptrace.AddThreadClones(c.b, []ptrace.ThreadState{st}) {
		args, _ := th.Args.DataOffset()
		tid, _ := th.TID.DataOffset()
		c.relocs = append(c.relocs, Reloc{Kind: RelocDataPtr, DataOff: uint32(args + ptrace.CloneArgsSetTID), Value: uint64(tid)})
	}
}

// writeSynth writes a synthetic image into a new directory.
func writeSynth(t testing.TB, mod func(c *compiled)) string {
	t.Helper()
	dir := t.TempDir()
	meta, plan, size := synth(mod)
	os.WriteFile(filepath.Join(dir, MetaFile), meta, 0o644)
	os.WriteFile(filepath.Join(dir, PlanFile), plan, 0o644)
	os.WriteFile(filepath.Join(dir, ObjectsFile), (&kobj.Table{}).Encode(), 0o644)
	if err := os.WriteFile(filepath.Join(dir, PagesFile), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(dir, []string{MetaFile, PlanFile, ObjectsFile, PagesFile}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenSynthetic(t *testing.T) {
	img, err := Open(writeSynth(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	thr, err := Open(writeSynth(t, withThread))
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.Size(threadRecord{}); n != 360 {
		t.Fatalf("thread record is %d bytes, docs/IMAGE.md says 360", n)
	}
	if len(thr.Threads) != 1 || thr.Threads[0].NSTID != 7 || thr.Threads[0].Comm != "worker" || thr.Threads[0].Caps.Permitted != 3 {
		t.Fatalf("thread records read back as %+v", thr.Threads)
	}
	if err := Validate(img); err != nil {
		t.Fatal(err)
	}
	if err := img.Verify(); err != nil {
		t.Fatal(err)
	}
}

func wantInvalid(t *testing.T, err error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want an error mentioning %q", substr)
	}
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q: want errdefs.ErrInvalid mentioning %q", err, substr)
	}
	t.Logf("refused: %v", err)
}

func TestHostileImages(t *testing.T) {
	t.Run("truncated pages.img", func(t *testing.T) {
		dir := writeSynth(t, nil)
		os.Truncate(filepath.Join(dir, PagesFile), pageSize)
		_, err := Open(dir)
		wantInvalid(t, err, "truncated")
	})
	t.Run("flipped byte in plan.bin", func(t *testing.T) {
		dir := writeSynth(t, nil)
		p := filepath.Join(dir, PlanFile)
		b, _ := os.ReadFile(p)
		b[100] ^= 1
		os.WriteFile(p, b, 0o644)
		_, err := Open(dir)
		wantInvalid(t, err, "checksum")
	})
	t.Run("truncated meta.bin", func(t *testing.T) {
		meta, plan, size := synth(nil)
		_, err := decode(meta[:len(meta)-8], plan, size)
		wantInvalid(t, err, "meta")
	})
	t.Run("overlapping mappings", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.vmas = append(c.vmas, VMA{Start: 0x10001000, End: 0x10003000, PagesOff: noPages, Prot: 3, Kind: VMAAnon})
		}))
		wantInvalid(t, err, "overlaps")
	})
	t.Run("mapped twice", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_MMAP, ptrace.Lit(0x10000000), ptrace.Lit(0x2000), ptrace.Lit(3),
				ptrace.Lit(unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_ANONYMOUS), ptrace.Lit(-1), ptrace.Lit(0))
		}))
		wantInvalid(t, err, "twice")
	})
	t.Run("bad pages offset", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) { c.vmas[0].PagesOff = 2 * pageSize }))
		wantInvalid(t, err, "outside pages.img")
	})
	t.Run("non-canonical mapping", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.vmas = append(c.vmas, VMA{Start: 0x800000000000, End: 0x800000001000, PagesOff: noPages, Prot: 3, Kind: VMAAnon})
		}))
		wantInvalid(t, err, "canonical")
	})
	t.Run("mapping over the executor", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.vmas = append(c.vmas, VMA{Start: 1 << 32, End: 1<<32 + pageSize, PagesOff: noPages, Prot: 3, Kind: VMAAnon})
		}))
		wantInvalid(t, err, "executor")
	})
	t.Run("munmap of the executor", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_MUNMAP, ptrace.Lit(0), ptrace.Lit(taskSize))
		}))
		wantInvalid(t, err, "executor")
	})
	t.Run("execve in the plan", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_EXECVE, c.b.String("/bin/sh"), ptrace.Lit(0), ptrace.Lit(0))
		}))
		wantInvalid(t, err, "not allowed")
	})
	t.Run("relocation out of range", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.relocs = append(c.relocs, Reloc{Kind: RelocVDSO, Entry: 999, Arg: 0})
		}))
		wantInvalid(t, err, "relocation")
	})
	t.Run("data pointer out of range", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.relocs = append(c.relocs, Reloc{Kind: RelocDataPtr, DataOff: 1 << 20, Value: 0})
		}))
		wantInvalid(t, err, "relocation")
	})
	t.Run("creating files", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), c.b.String("/etc/x"), ptrace.Lit(unix.O_CREAT|unix.O_WRONLY))
		}))
		wantInvalid(t, err, "creating")
	})
	t.Run("older format version", func(t *testing.T) {
		dir := writeSynth(t, nil)
		p := filepath.Join(dir, ManifestFile)
		b, _ := os.ReadFile(p)
		binary.LittleEndian.PutUint32(b[8:], 1)
		os.WriteFile(p, b, 0o644)
		_, err := Open(dir)
		wantInvalid(t, err, "checkpoint the process again")
	})
	thread := func(mod func(c *compiled)) func(c *compiled) {
		return func(c *compiled) { withThread(c); mod(c) }
	}
	t.Run("thread clone3 with other flags", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) {
			for _, e := range c.b.Entries() {
				if e.Nr == unix.SYS_CLONE3 {
					c.b.SetBytes(c.b.DataAt(int(e.Args[0])), []byte{0xff}) // CSIGNAL bits: an exit signal
				}
			}
		})))
		wantInvalid(t, err, "clone_args are not those")
	})
	t.Run("thread clone3 as a fork point", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) {
			for i, e := range c.b.Entries() {
				if e.Nr == unix.SYS_CLONE3 {
					c.b.Entries()[i].Flags = ptrace.ForkPoint
				}
			}
		})))
		wantInvalid(t, err, "no fork point")
	})
	t.Run("clone3 without a thread record", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) { c.threads = nil })))
		wantInvalid(t, err, "more clone3 entries")
	})
	t.Run("thread record without its clone3", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) {
			other := c.threads[0]
			other.NSTID = 8
			c.threads = append(c.threads, other)
		})))
		wantInvalid(t, err, "the image records 2")
	})
	t.Run("sigaltstack over a thread's clone_args", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) {
			for _, e := range c.b.Entries() {
				if e.Nr == unix.SYS_CLONE3 {
					c.b.Add(unix.SYS_SIGALTSTACK, ptrace.Lit(0), c.b.DataAt(int(e.Args[0])))
					break
				}
			}
		})))
		wantInvalid(t, err, "writes into a thread's clone_args")
	})
	t.Run("pipe2 (pipes are objects.bin's)", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) { c.b.Add(unix.SYS_PIPE2, c.b.Space(8), ptrace.Lit(0)) }))
		wantInvalid(t, err, "not allowed")
	})
	t.Run("thread tid out of range", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) { c.threads[0].NSTID = 1 << 23 })))
		wantInvalid(t, err, "tid out of range")
	})
	t.Run("thread capabilities", func(t *testing.T) {
		_, err := Open(writeSynth(t, thread(func(c *compiled) { c.threads[0].Caps.Effective = 4 })))
		wantInvalid(t, err, "capabilities")
	})
	t.Run("blocking flock", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) { c.b.Add(unix.SYS_FLOCK, ptrace.Lit(3), ptrace.Lit(unix.LOCK_EX)) }))
		wantInvalid(t, err, "non-blocking")
	})
	t.Run("blocking record lock", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_FCNTL, ptrace.Lit(3), ptrace.Lit(unix.F_SETLKW), c.b.Space(32))
		}))
		wantInvalid(t, err, "fcntl command not allowed")
	})
	t.Run("record lock outside the data area", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_FCNTL, ptrace.Lit(3), ptrace.Lit(unix.F_OFD_SETLK), ptrace.Lit(0x10000000))
		}))
		wantInvalid(t, err, "struct flock")
	})
	t.Run("lease of another kind", func(t *testing.T) {
		_, err := Open(writeSynth(t, func(c *compiled) {
			c.b.Add(unix.SYS_FCNTL, ptrace.Lit(3), ptrace.Lit(unix.F_SETLEASE), ptrace.Lit(7))
		}))
		wantInvalid(t, err, "lease")
	})
	t.Run("unknown manifest file", func(t *testing.T) {
		_, err := parseManifest(append(append([]byte{}, manifestMagic[:]...), FormatVersion, 0, 0, 0, 9, 0, 0, 0))
		wantInvalid(t, err, "files")
	})
}

// openBody is the body shared by FuzzOpen and its fixed inputs: any bytes
// as manifest must either parse or be refused, never panic.
func openBody(t *testing.T, manifest []byte) {
	ents, err := parseManifest(manifest)
	if err == nil && len(ents) > maxManifestN {
		t.Fatalf("manifest with %d files accepted", len(ents))
	}
}

// validateBody is the body shared by FuzzValidate and its fixed inputs:
// what decode accepts must be self-consistent.
func validateBody(t *testing.T, meta, plan []byte) {
	var size uint64
	if len(meta) >= 56 {
		size = binary.LittleEndian.Uint64(meta[48:]) // metaHeader.PagesSize
	}
	img, err := decode(meta, plan, size)
	if err != nil {
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("error not ErrInvalid: %v", err)
		}
		return
	}
	if err := Validate(img); err != nil {
		t.Fatalf("decode accepted what Validate refuses: %v", err)
	}
	for i := 1; i < len(img.VMAs); i++ {
		if img.VMAs[i].Start < img.VMAs[i-1].End {
			t.Fatalf("overlapping VMAs accepted")
		}
	}
}

func TestValidateFixed(t *testing.T) {
	meta, plan, _ := synth(nil)
	validateBody(t, meta, plan)
	tmeta, tplan, _ := synth(withThread)
	validateBody(t, tmeta, tplan)
	validateBody(t, tmeta[:len(tmeta)-1], tplan)
	validateBody(t, meta[:10], plan)
	validateBody(t, meta, plan[:64])
	validateBody(t, nil, nil)
	openBody(t, nil)
	openBody(t, manifestMagic[:])
}

func FuzzOpen(f *testing.F) {
	dir := writeSynth(f, nil)
	b, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	f.Add(b)
	f.Fuzz(openBody)
}

func FuzzValidate(f *testing.F) {
	meta, plan, _ := synth(nil)
	f.Add(meta, plan)
	tmeta, tplan, _ := synth(withThread)
	f.Add(tmeta, tplan)
	f.Fuzz(validateBody)
}
