package image

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// inetVictim holds internet sockets: fd 3 a UDP socket bound to
// 127.0.0.1 (SO_BROADCAST, SO_RCVTIMEO 2.5 s), fd 4 a UDP socket
// connected to fd 3, fd 5 a TCP listener (SO_REUSEADDR, SO_LINGER 30 s,
// backlog 7), fd 6 an unbound IPv6 UDP socket (IPV6_V6ONLY), fd 7 an
// unbound TCP socket (TCP_NODELAY). 'p' prints their state; 'a' accepts a
// connection on fd 5 and writes "hi" to it; 'u' receives a datagram on
// fd 3; 'c' sends one from fd 4 and receives it on fd 3; 'b' binds fd 7
// to 127.0.0.1.
const inetVictim = `
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
static int port(int fd, int peer) {
	struct sockaddr_in a; socklen_t l = sizeof a;
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&a, &l)) return -1;
	return ntohs(a.sin_port);
}
static int opt(int fd, int level, int name) { int v = -1; socklen_t l = sizeof v; getsockopt(fd, level, name, &v, &l); return v; }
int main(void) {
	close_range(3, ~0U, 0);
	struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	int u = socket(AF_INET, SOCK_DGRAM, 0), c = socket(AF_INET, SOCK_DGRAM, 0), l = socket(AF_INET, SOCK_STREAM, 0);
	int v6 = socket(AF_INET6, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
	if (u != 3 || c != 4 || l != 5 || v6 != 6 || t != 7) return 1;
	setsockopt(u, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(v6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	struct linger lg = {1, 30};
	setsockopt(l, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	setsockopt(t, SOL_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {2, 500000};
	setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (bind(u, (struct sockaddr *)&lo, sizeof lo) || bind(l, (struct sockaddr *)&lo, sizeof lo) || listen(l, 7)) return 2;
	struct sockaddr_in ua; socklen_t ul = sizeof ua;
	getsockname(u, (struct sockaddr *)&ua, &ul);
	if (connect(c, (struct sockaddr *)&ua, ul)) return 3;
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch, buf[64];
	while (read(0, &ch, 1) == 1) {
		if (ch == 'p') {
			struct tcp_info ti; socklen_t tl = sizeof ti; getsockopt(l, SOL_TCP, TCP_INFO, &ti, &tl);
			struct linger g; socklen_t gl = sizeof g; getsockopt(l, SOL_SOCKET, SO_LINGER, &g, &gl);
			struct timeval rt; socklen_t rl = sizeof rt; getsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &rt, &rl);
			printf("rcvtimeo=%ld.%06ld udp=%d bc=%d conn=%d peer=%d tcp=%d ra=%d listen=%d backlog=%u linger=%d/%d v6only=%d unbound=%d nodelay=%d\n",
			       (long)rt.tv_sec, (long)rt.tv_usec, port(u, 0), opt(u, SOL_SOCKET, SO_BROADCAST), port(c, 0), port(c, 1), port(l, 0),
			       opt(l, SOL_SOCKET, SO_REUSEADDR), opt(l, SOL_SOCKET, SO_ACCEPTCONN), ti.tcpi_sacked,
			       g.l_onoff, g.l_linger, opt(v6, IPPROTO_IPV6, IPV6_V6ONLY), port(t, 0), opt(t, SOL_TCP, TCP_NODELAY));
		} else if (ch == 'a') {
			int s = accept(l, NULL, NULL);
			printf("accepted %d\n", s >= 0 && write(s, "hi", 2) == 2);
			close(s);
		} else if (ch == 'u' || ch == 'c') {
			if (ch == 'c') send(c, "via4", 4, 0);
			struct sockaddr_in from; socklen_t fl = sizeof from;
			int n = recvfrom(u, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
			buf[n > 0 ? n : 0] = 0;
			printf("got %s from %d\n", buf, ntohs(from.sin_port));
		} else if (ch == 'b') {
			printf("bind %d\n", bind(t, (struct sockaddr *)&lo, sizeof lo));
		}
	}
	return 0;
}
`

// TestInetSockets checkpoints a process holding UDP sockets (bound,
// connected) and TCP sockets (listening, unbound), and uses each restored
// one: a connection to the listener, datagrams to the bound socket and
// from the connected one.
func TestInetSockets(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "sockets", inetVictim))
	before := v.ask(t, 'p')
	if !strings.Contains(before, "bc=1") || !strings.Contains(before, "backlog=7") || !strings.Contains(before, "unbound=0") ||
		!strings.Contains(before, "linger=1/30") || !strings.Contains(before, "rcvtimeo=2.500000") || !strings.Contains(before, "nodelay=1") {
		t.Fatalf("victim: %q", before)
	}
	p, img := roundTrip(t, tr, v)
	if got := p.ask(t, 'p'); got != before {
		t.Fatalf("restored: %q, want %q (image %s)", got, before, img.Objects.Summary())
	}
	connectRestored(t, p, "tcp", "127.0.0.1:"+field(t, before, "tcp"))
	u, err := net.Dial("udp", "127.0.0.1:"+field(t, before, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	from := u.LocalAddr().(*net.UDPAddr).Port
	if got, want := p.ask(t, 'u'), fmt.Sprintf("got ping from %d", from); got != want {
		t.Errorf("datagram to the restored socket: %q, want %q", got, want)
	}
	if got, want := p.ask(t, 'c'), "got via4 from "+field(t, before, "conn"); got != want {
		t.Errorf("datagram from the restored connected socket: %q, want %q", got, want)
	}
	if got := p.ask(t, 'b'); got != "bind 0" {
		t.Errorf("bind of the restored unbound socket: %q", got)
	}
}

// unixVictim holds unix sockets outside a pair, under directory argv[1]:
// fd 3 unbound (stream, SO_PASSCRED), fd 4 a datagram socket bound to
// DIR/srv.sock, fd 5 one connected to it, fd 6 a stream listener on
// DIR/l.sock (backlog 5), fd 7 a datagram socket bound to an abstract
// name, fd 8 the end of a datagram pair whose other end was closed. Fd 4
// has "queued" queued from fd 5, fd 8 "left". 'p' prints their state;
// 'd' sends from fd 5 and receives twice on fd 4; 'o' receives on fd 8
// and sends on it; 'a' accepts on fd 6 and writes "hi".
const unixVictim = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static struct sockaddr_un un(const char *dir, const char *name) {
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s%s", dir, name);
	return a;
}
static const char *name(int fd, int peer) {
	static char out[2][128]; static int k;
	struct sockaddr_un a; socklen_t l = sizeof a;
	char *o = out[k++ % 2];
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&a, &l)) return "-";
	if (l <= sizeof(sa_family_t)) return "unbound";
	if (a.sun_path[0] == 0) { snprintf(o, 128, "@%.*s", (int)(l - sizeof(sa_family_t) - 1), a.sun_path + 1); return o; }
	const char *s = strrchr(a.sun_path, '/');
	snprintf(o, 128, "%s", s ? s + 1 : a.sun_path);
	return o;
}
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	int one = 1;
	int u = socket(AF_UNIX, SOCK_STREAM, 0), srv = socket(AF_UNIX, SOCK_DGRAM, 0), cl = socket(AF_UNIX, SOCK_DGRAM, 0);
	int l = socket(AF_UNIX, SOCK_STREAM, 0), ab = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (u != 3 || srv != 4 || cl != 5 || l != 6 || ab != 7) return 1;
	setsockopt(u, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
	struct sockaddr_un sa = un(argv[1], "/srv.sock"), la = un(argv[1], "/l.sock"), aa = {.sun_family = AF_UNIX};
	snprintf(aa.sun_path + 1, sizeof aa.sun_path - 1, "cz-test-%d", getpid());
	socklen_t al = sizeof(sa_family_t) + 1 + strlen(aa.sun_path + 1);
	if (bind(srv, (struct sockaddr *)&sa, sizeof sa) || connect(cl, (struct sockaddr *)&sa, sizeof sa) ||
	    bind(l, (struct sockaddr *)&la, sizeof la) || listen(l, 5) || bind(ab, (struct sockaddr *)&aa, al)) return 2;
	int pr[2];
	if (send(cl, "queued", 6, 0) != 6 || socketpair(AF_UNIX, SOCK_DGRAM, 0, pr) || pr[0] != 8 ||
	    send(pr[1], "left", 4, 0) != 4 || close(pr[1])) return 3;
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch, buf[64];
	while (read(0, &ch, 1) == 1) {
		if (ch == 'p') {
			int v = 0; socklen_t vl = sizeof v; getsockopt(u, SOL_SOCKET, SO_PASSCRED, &v, &vl);
			int acc = 0; vl = sizeof acc; getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &acc, &vl);
			printf("u=%s passcred=%d srv=%s cl=%s peer=%s l=%s listen=%d ab=%s\n", name(u, 0), v, name(srv, 0),
			       name(cl, 0), name(cl, 1), name(l, 0), acc, strncmp(name(ab, 0), "@cz-test-", 9) ? "wrong" : "abstract");
		} else if (ch == 'd') {
			send(cl, "dgram", 5, 0);
			char b2[64];
			int n = recv(srv, buf, sizeof buf - 1, 0), m = recv(srv, b2, sizeof b2 - 1, 0);
			buf[n > 0 ? n : 0] = 0;
			b2[m > 0 ? m : 0] = 0;
			printf("got %s %s\n", buf, b2);
		} else if (ch == 'o') {
			int n = recv(8, buf, sizeof buf - 1, MSG_DONTWAIT);
			buf[n > 0 ? n : 0] = 0;
			int e = send(8, "x", 1, MSG_DONTWAIT) < 0 ? errno : 0;
			printf("orphan %s send %d\n", buf, e);
		} else if (ch == 'a') {
			int s = accept(l, NULL, NULL);
			printf("accepted %d\n", s >= 0 && write(s, "hi", 2) == 2);
			close(s);
		}
	}
	return 0;
}
`

// TestUnixSockets checkpoints a process holding unix sockets that are not
// pairs (unbound, bound to paths and an abstract name, connected to one
// of its own, listening), restores it over the socket files its dead
// process left (unlinked and bound again), and uses them. Attack: a file
// put at a socket's path that is not a socket is never unlinked: the
// restore fails on it and it stays.
func TestUnixSockets(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	dir := t.TempDir()
	v := startVictim(t, gccBuild(t, "unixsock", unixVictim), dir)
	const want = "u=unbound passcred=1 srv=srv.sock cl=unbound peer=srv.sock l=l.sock listen=1 ab=abstract"
	if got := v.ask(t, 'p'); got != want {
		t.Fatalf("victim: %q, want %q", got, want)
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()

	// A regular file where the listener's socket file was.
	lpath := filepath.Join(dir, "l.sock")
	if err := os.Remove(lpath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lpath, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, tc, err := StartRestorer(tr, []*os.File{os.Stdin, os.Stdout})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Restore(tr, img, RestoreOptions{Tracee: tc, Reconnect: map[int]int{0: 3, 1: 4}})
	cmd.Process.Kill()
	cmd.Wait()
	if err == nil {
		t.Fatal("restored over a regular file at a socket's path")
	}
	if b, rerr := os.ReadFile(lpath); rerr != nil || string(b) != "keep" {
		t.Fatalf("the file at the socket's path after the refused restore: %q, %v (restore: %v)", b, rerr, err)
	}
	t.Logf("over a regular file: %v", err)
	os.Remove(lpath)

	p, _ := restore(t, tr, img, false)
	if got := p.ask(t, 'p'); got != want {
		t.Fatalf("restored: %q, want %q (image %s)", got, want, img.Objects.Summary())
	}
	if got := p.ask(t, 'o'); got != "orphan left send 111" {
		t.Errorf("the pair end whose other end was closed: %q, want %q", got, "orphan left send 111 (ECONNREFUSED)")
	}
	if got := p.ask(t, 'd'); got != "got queued dgram" {
		t.Errorf("datagram through the restored pair of sockets: %q", got)
	}
	connectRestored(t, p, "unix", lpath)
}

// connectRestored connects to the restored process p's listener at addr,
// has p accept ('a') and reads the "hi" it writes.
func connectRestored(t *testing.T, p *proc, network, addr string) {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("connect to the restored listener: %v", err)
	}
	defer conn.Close()
	if got := p.ask(t, 'a'); got != "accepted 1" {
		t.Errorf("accept: %q", got)
	}
	buf := make([]byte, 8)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Errorf("read from the accepted connection: %q, %v", buf[:n], err)
	}
}
