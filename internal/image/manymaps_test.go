package image

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// manyMapsVictim splits 40000 pages into 40000 mappings (every other page
// read-only), each page holding its index; 'p' prints the number of
// mappings and a sum over the pages.
const manyMapsVictim = `
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define N 40000
int main(void) {
	close_range(3, ~0U, 0);
	char *m = mmap(0, (long)N * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (long i = 0; i < N; i++) *(long *)(m + i * 4096) = i;
	for (long i = 0; i < N; i += 2) mprotect(m + i * 4096, 4096, PROT_READ);
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch;
	while (read(0, &ch, 1) == 1) {
		FILE *f = fopen("/proc/self/maps", "r"); char l[512]; int n = 0;
		while (fgets(l, sizeof l, f)) n++;
		fclose(f);
		long sum = 0;
		for (long i = 0; i < N; i++) sum += *(long *)(m + i * 4096);
		printf("maps>%d sum %ld\n", n > N, sum);
	}
	return 0;
}
`

// TestManyMappings: a process with tens of thousands of mappings, whose
// plan does not fit one executor batch, is restored with its plan in
// several batches.
func TestManyMappings(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "manymaps", manyMapsVictim))
	const want = "maps>1 sum 799980000"
	if got := v.ask(t, 'p'); got != want {
		t.Fatalf("victim: %q, want %q", got, want)
	}
	p, img := roundTrip(t, tr, v)
	if n := len(img.PlanBatches()); n < 2 {
		t.Fatalf("plan of %d batches for %d VMAs, want several", n, len(img.VMAs))
	}
	if got := p.ask(t, 'p'); got != want {
		t.Errorf("restored: %q, want %q", got, want)
	}
}

// TestHostileBatches: a plan of several batches is held to the same rules
// across them.
func TestHostileBatches(t *testing.T) {
	// split moves the synthetic plan's mapping into a batch of its own
	// that opens pages.img itself, as mapMemory does.
	split := func(c *compiled) {
		c.done = []*ptrace.Batch{c.b}
		c.b = ptrace.NewBatch()
		path := c.b.Space(4096)
		pages := c.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), path, ptrace.Lit(unix.O_RDONLY))
		off, _ := path.DataOffset()
		c.relocs = append(c.relocs, Reloc{Kind: RelocPagesPath, Batch: 1, Entry: uint32(pages.Index()), DataOff: uint32(off), Value: 4096})
		c.b.Add(unix.SYS_CLOSE, pages.Result())
	}
	if _, err := Open(writeSynth(t, split)); err != nil {
		t.Fatalf("a plan of two batches: %v", err)
	}
	for name, c := range map[string]struct {
		mod  func(c *compiled)
		want string
	}{
		"relocation of no batch": {func(c *compiled) { split(c); c.relocs[1].Batch = 2 }, "batch 2 of a plan of 2"},
		"VMA mapped in two batches": {func(c *compiled) {
			split(c)
			c.b.Add(unix.SYS_MMAP, ptrace.Lit(0x10000000), ptrace.Lit(0x2000), ptrace.Lit(3),
				ptrace.Lit(unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_ANONYMOUS), ptrace.Lit(-1), ptrace.Lit(0))
		}, "mapped twice"},
		"clone3 before the last batch": {func(c *compiled) {
			withThread(c)
			split(c)
		}, "clone3 outside the last batch"},
		"pread from another file": {func(c *compiled) {
			split(c)
			c.b.Add(unix.SYS_PREAD64, ptrace.Lit(5), ptrace.Lit(0x10000000), ptrace.Lit(4096), ptrace.Lit(0))
		}, "reads other than from pages.img"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(writeSynth(t, c.mod))
			wantInvalid(t, err, c.want)
		})
	}
	for name, plan := range map[string][]byte{
		"no batches": append(append([]byte(nil), planMagic[:]...), 0, 0, 0, 0),
		"bad magic":  []byte("CZPLAN\x00\x01\x01\x00\x00\x00"),
		"truncated":  append(append([]byte(nil), planMagic[:]...), 1, 0, 0, 0, 0xff, 0xff, 0, 0),
		"too many":   append(append([]byte(nil), planMagic[:]...), maxPlanBatches+1, 0, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodePlan(plan)
			wantInvalid(t, err, "plan")
		})
	}
}
