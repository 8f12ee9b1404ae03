package image

import (
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// shutdownVictim holds a stream socket pair whose end 3 wrote "x" and
// shut down its sending side, and a datagram pair whose end 5 shut down
// its receiving side. 'p' reads end 4 twice (the byte, then end of file),
// writes to end 3 (EPIPE) and sends to end 5 from its peer (EPIPE: end 5
// receives nothing).
const shutdownVictim = `
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
	close_range(3, ~0U, 0);
	signal(SIGPIPE, SIG_IGN);
	int s[2], d[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_DGRAM, 0, d)) return 1;
	if (write(s[0], "x", 1) != 1 || shutdown(s[0], SHUT_WR) || shutdown(d[0], SHUT_RD)) return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	char ch;
	while (read(0, &ch, 1) == 1) {
		char b[4] = {0};
		int n1 = read(s[1], b, 1), n2 = read(s[1], b + 1, 1);
		int w = write(s[0], "y", 1), we = errno;
		int r = send(d[1], "z", 1, MSG_DONTWAIT), re = errno;
		printf("read %d %c %d write %d epipe %d send %d epipe %d\n", n1, b[0], n2, w, we == EPIPE, r, re == EPIPE);
	}
	return 0;
}
`

// TestSocketPairShutdown: socket pairs shut down in a direction are
// restored so (a stream pair's end of file after its bytes, EPIPE; a
// datagram end that takes nothing).
func TestSocketPairShutdown(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "shutdown", shutdownVictim))
	if l, _ := v.out.ReadString('\n'); l != "ready\n" {
		t.Fatalf("victim: %q", l)
	}
	p, _ := roundTrip(t, tr, v)
	if got, want := p.ask(t, 'p'), "read 1 x 0 write -1 epipe 1 send -1 epipe 1"; got != want {
		t.Errorf("restored: %q, want %q", got, want)
	}
}
