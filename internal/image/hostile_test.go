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
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// synth builds a small valid image by hand (no process needed): one
// anonymous VMA of two pages mapped from pages.img, then mod may spoil it.
func synth(mod func(c *compiled)) (meta, plan []byte, pagesSize uint64) {
	c := &compiled{b: ptrace.NewBatch()}
	c.hdr = metaHeader{ExecAddr: 1 << 32, TempAddr: 1<<32 + ptrace.ExecutorRegionSize, TempSize: 0x8000, PagesSize: 3 * pageSize}
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
	return encodeMeta(c.hdr, c.vmas, c.relocs, c.fds, nil, nil), c.b.Encode(), c.hdr.PagesSize
}

// writeSynth writes a synthetic image into a new directory.
func writeSynth(t testing.TB, mod func(c *compiled)) string {
	t.Helper()
	dir := t.TempDir()
	meta, plan, size := synth(mod)
	os.WriteFile(filepath.Join(dir, MetaFile), meta, 0o644)
	os.WriteFile(filepath.Join(dir, PlanFile), plan, 0o644)
	if err := os.WriteFile(filepath.Join(dir, PagesFile), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(dir, []string{MetaFile, PlanFile, PagesFile}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenSynthetic(t *testing.T) {
	img, err := Open(writeSynth(t, nil))
	if err != nil {
		t.Fatal(err)
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
	f.Fuzz(validateBody)
}
