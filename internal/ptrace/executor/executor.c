/*
 * executor.c: the batch executor injected into a tracee by package ptrace.
 *
 * Freestanding, position-independent x86-64 code: no libc, no data
 * sections, no relocations, no jump tables. build.sh links it at address 0
 * and keeps only the bytes of .text (executor_amd64.bin). The Go side
 * copies those bytes into the first page of a private anonymous mapping in
 * the tracee and makes that page R-X.
 *
 * Entry points (offsets into the blob, fixed by the asm below and checked by
 * the Go tests):
 *
 *   0: "syscall; int3"   single injected syscall: the tracer sets rax and
 *                         the argument registers, rip = 0, PTRACE_CONT, and
 *                         waits for the SIGTRAP of the int3 (rip == 3).
 *   8: batch entry        rdi = address of the batch, rsp = top of the
 *                         executor's own stack (16-byte aligned) inside the
 *                         mapping. Runs the batch, then stops for good on
 *                         the int3 loop at "done" (rip == done+1).
 *
 * The batch layout is documented in ../doc.go; the constants here must match
 * batch.go (TestExecutorConstants checks the offsets).
 *
 * Registers: the code uses the stack given by the tracer and whatever
 * registers the compiler picks; the tracer saves and restores every
 * register around a run, so nothing has to be preserved here.
 */

typedef unsigned long u64;
typedef long s64;
typedef unsigned int u32;
typedef int s32;
typedef unsigned short u16;

#define F_IGNORE_ERROR 0x1
#define F_FORK_POINT 0x2
#define F_REPEAT_WHILE_POSITIVE 0x4
#define F_STOP_AFTER 0x8

#define R_LIT 0
#define R_RESULT 1
#define R_DATA 2
#define R_LOAD32 3

#define S_RUNNING 1
#define S_DONE 2
#define S_ERROR 3
#define S_PAUSED 4
#define S_FORK_PARENT 5

struct header {
	u32 magic;
	u16 version;
	u16 header_size;
	u32 count;
	u32 entry_size;
	u32 entries_off;
	u32 data_off;
	u32 data_size;
	u32 results_off;
	u32 total_size;
	u32 flags;
};

struct entry {
	u32 nr;
	u16 flags;
	u16 reserved0;
	u32 reloc;
	u32 reserved1;
	u64 args[6];
};

struct results {
	u64 status;
	u64 index;
	s64 values[];
};

__asm__(
	".section .text.start,\"ax\",@progbits\n"
	".globl _start\n"
	"_start:\n"
	"	syscall\n" /* 0 */
	"	int3\n"    /* 2 */
	"	.balign 8, 0xcc\n"
	"batch_entry:\n" /* 8 */
	"	cld\n"
	"	call run_batch\n"
	"done:\n"
	"	int3\n"
	"	jmp done\n"
	".previous\n");

static inline s64 sys6(u64 n, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f)
{
	register u64 r10 __asm__("r10") = d;
	register u64 r8 __asm__("r8") = e;
	register u64 r9 __asm__("r9") = f;
	s64 ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

__attribute__((used, noinline)) void run_batch(struct header *h)
{
	char *base = (char *)h;
	struct entry *e = (struct entry *)(base + h->entries_off);
	char *data = base + h->data_off;
	struct results *r = (struct results *)(base + h->results_off);
	u32 n = h->count;

	r->status = S_RUNNING;
	for (u32 i = 0; i < n; i++, e++) {
		u64 a[6];
		for (int k = 0; k < 6; k++) {
			u64 v = e->args[k];
			switch ((e->reloc >> (2 * k)) & 3) {
			case R_RESULT:
				v = (u64)r->values[v];
				break;
			case R_DATA:
				v = (u64)(data + v);
				break;
			case R_LOAD32:
				v = (u64)(s64) * (s32 *)(data + v);
				break;
			}
			a[k] = v;
		}
		s64 ret;
		do {
			ret = sys6(e->nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		} while ((e->flags & F_REPEAT_WHILE_POSITIVE) && ret > 0);
		r->values[i] = ret;
		r->index = i;
		if ((u64)ret > (u64)-4096 && !(e->flags & F_IGNORE_ERROR)) {
			r->status = S_ERROR;
			return;
		}
		if ((e->flags & F_FORK_POINT) && ret > 0) {
			r->status = S_FORK_PARENT;
			return;
		}
		if (e->flags & F_STOP_AFTER) {
			r->status = S_PAUSED;
			__asm__ volatile("int3" ::: "memory");
			r->status = S_RUNNING;
		}
	}
	r->status = S_DONE;
}
