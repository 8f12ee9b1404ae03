package oci

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/sfork"
)

// A template container (dev.catalyzer.template=true) runs process.args
// as a scratch container does, with one more descriptor: the fork
// channel, a unix socket on fd 3+--preserve-fds (templateChanFD), whose
// other end its holder has. The process signals readiness on it: it
// writes the line "ready" to the channel, then reads a line from it
// (`echo ready >&3; read go <&3` in a shell). The holder freezes it
// under ptrace (sfork.FreezeWith) as soon as it has the line: wherever
// it is frozen, on its way to that read or in it, what it does next is
// read the channel, which is where a fork would be told to go on. (A signal is no
// readiness signal here: the process is PID 1 of its PID namespace, and
// the kernel drops a SIGSTOP it sends itself.) The holder is this binary re-executed
// by create (holderEnv), detached from the shim's session and stdio; it
// serves the template on <root>/<id>/holder.sock, writes what went wrong
// to <root>/<id>/holder.log, and ends when the template does (reaping it
// as its tracer first, so that the shim, its parent, reaps it next) or
// when delete stops it (SIGTERM: it kills the template).
const (
	holderEnv    = "_CATALYZER_OCI_HOLDER"
	holderSock   = "holder.sock"
	holderLog    = "holder.log"
	frozenFile   = "frozen.json" // written by the holder once the template is frozen
	holderChanFD = 3             // the holder's end of the fork channel
)

// templateChanFD is the template's fork channel descriptor number.
func templateChanFD(preserve int) int { return 3 + preserve }

// Frozen is what the holder records (frozen.json) and answers on its
// socket once the template is frozen.
type Frozen struct {
	Pid     int       `json:"pid"`    // the template's host pid
	Holder  int       `json:"holder"` // the holder's pid, its tracer
	Threads int       `json:"threads"`
	At      time.Time `json:"at"`
}

// holderRequest and holderReply are one JSON line each on holder.sock.
type holderRequest struct {
	Op string `json:"op"` // "info"
}

type holderReply struct {
	Frozen *Frozen `json:"frozen,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// startHolder starts container rec's holder with the holder's end of the
// fork channel; it records the holder's pid in rec. The holder keeps no
// descriptor of the caller's but the channel: its stdio is /dev/null, and
// the preserved fds (inherited without close-on-exec) are marked
// close-on-exec first (the init has its copies already).
func startHolder(dir string, rec *record, preserve int, ch *os.File) (*exec.Cmd, error) {
	for i := 0; i < preserve; i++ {
		unix.CloseOnExec(3 + i)
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{"catalyzer-template-holder", dir, rec.ID, strconv.Itoa(rec.Pid),
			strconv.FormatUint(rec.PidStart, 10), strconv.Itoa(templateChanFD(preserve))},
		Env:         []string{holderEnv + "=1"},
		ExtraFiles:  []*os.File{ch},
		Dir:         "/", // nothing of the bundle held
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the template's holder: %w", err)
	}
	rec.Holder = cmd.Process.Pid
	rec.HolderStart, _ = procStart(rec.Holder)
	return cmd, nil
}

// maybeHolder runs the holder when this binary is one (see startHolder),
// never returning; elsewhere it returns at once.
func maybeHolder() {
	if os.Getenv(holderEnv) == "" {
		return
	}
	os.Unsetenv(holderEnv)
	os.Exit(runHolder(os.Args[1:]))
}

func runHolder(args []string) int {
	if len(args) != 5 {
		return 2
	}
	dir, id := args[0], args[1]
	pid, err1 := strconv.Atoi(args[2])
	start, err2 := strconv.ParseUint(args[3], 10, 64)
	chanFD, err3 := strconv.Atoi(args[4])
	if err := errors.Join(err1, err2, err3); err != nil {
		return 2
	}
	lf, err := os.OpenFile(filepath.Join(dir, holderLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 1
	}
	defer lf.Close()
	lg := log.New(lf, "holder "+id+": ", log.LstdFlags|log.Lmicroseconds)
	h := &holder{dir: dir, id: id, pid: pid, start: start, chanFD: chanFD, log: lg}
	if err := h.run(); err != nil {
		lg.Print(err)
		return 1
	}
	return 0
}

type holder struct {
	dir, id    string
	pid        int
	start      uint64
	chanFD     int
	log        *log.Logger
	tpl        *sfork.Template
	frozenInfo Frozen
}

// run waits for readiness, freezes the template and serves it until the
// template ends or the holder is told to stop.
func (h *holder) run() error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM, unix.SIGINT)
	f := os.NewFile(holderChanFD, "fork-channel")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("fork channel: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()

	ready, err := h.waitReady(conn, term)
	if err != nil || !ready {
		return err
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := sfork.FreezeWith(tr, h.pid, conn, h.chanFD, sfork.FreezeOptions{Threads: true})
	if err != nil {
		// Stopped for good otherwise: end it, and say why.
		_ = unix.Kill(h.pid, unix.SIGKILL)
		return fmt.Errorf("freeze the template (pid %d): %w", h.pid, err)
	}
	h.tpl = tpl
	defer func() {
		if err := tpl.Close(); err != nil {
			h.log.Print(err)
		}
	}()
	sock := filepath.Join(h.dir, holderSock)
	_ = os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen %s: %w", sock, err)
	}
	defer ln.Close()
	// Only root may ask the holder anything: the state dir is 0711.
	if err := os.Chmod(sock, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", sock, err)
	}
	h.frozenInfo = Frozen{Pid: h.pid, Holder: os.Getpid(), Threads: 1 + len(tpl.Threads()), At: time.Now().UTC()}
	go h.serve(ln)
	// Last: the file says the socket serves.
	data, _ := json.Marshal(h.frozenInfo)
	if err := atomicfile.WriteFile(filepath.Join(h.dir, frozenFile), data, 0o600); err != nil {
		return err
	}

	// The template's end: its pidfd becomes readable once it exits.
	pfd, err := unix.PidfdOpen(h.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd of the template: %w", err)
	}
	defer unix.Close(pfd)
	exited := make(chan struct{})
	go func() {
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				close(exited)
				return
			}
		}
	}()
	select {
	case <-exited:
	case <-term:
	}
	return nil
}

// waitReady waits for the template's readiness: a line "ready" on the
// fork channel. false when the template exits first or the holder is
// told to stop.
func (h *holder) waitReady(conn *net.UnixConn, term <-chan os.Signal) (bool, error) {
	said := make(chan error, 1)
	go func() { said <- readReady(conn) }()
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		if !h.templateAlive() {
			return false, nil
		}
		select {
		case <-term:
			return false, nil
		case err := <-said:
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				// Closed without a word: the container runs on, never a
				// template.
				return false, fmt.Errorf("readiness: the template closed its fork channel (fd %d) before it wrote \"ready\": it runs on, unfrozen", h.chanFD)
			case err != nil:
				if !h.templateAlive() {
					return false, nil
				}
				// It said something else: it is not following the
				// protocol, and its forks would not either.
				_ = unix.Kill(h.pid, unix.SIGKILL)
				return false, fmt.Errorf("readiness: %w (the template was killed)", err)
			}
			return true, nil
		case <-time.After(delay):
		}
	}
}

// readyLineMax bounds what the holder reads of a template's readiness
// line: the tenant writes it, and the holder runs as host root.
const readyLineMax = 64

// readReady reads the template's readiness line from r: nil for
// "ready", io.EOF (or ErrUnexpectedEOF) when r closes first, an error
// naming what it wrote otherwise. It reads at most readyLineMax bytes.
func readReady(r io.Reader) error {
	line, err := bufio.NewReader(io.LimitReader(r, readyLineMax)).ReadString('\n')
	switch {
	case err == io.EOF && len(line) == readyLineMax:
		return fmt.Errorf("the template wrote %d bytes on its fork channel without a newline, want \"ready\"", readyLineMax)
	case err == io.EOF && line != "":
		return io.ErrUnexpectedEOF
	case err != nil:
		return err
	case strings.TrimSpace(line) != "ready":
		return fmt.Errorf("the template wrote %q on its fork channel, want \"ready\"", line)
	}
	return nil
}

func (h *holder) templateAlive() bool {
	st, err := procfs.Stat(h.pid)
	if err != nil || st.Exited() {
		return false
	}
	t, err := st.Uint(22)
	return err == nil && t == h.start
}

func (h *holder) serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var req holderRequest
			var rep holderReply
			if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
				rep.Error = fmt.Sprintf("bad request: %v", err)
			} else {
				switch req.Op {
				case "info":
					fi := h.frozenInfo
					rep.Frozen = &fi
				default:
					rep.Error = fmt.Sprintf("unknown op %q", req.Op)
				}
			}
			_ = json.NewEncoder(c).Encode(rep)
		}()
	}
}

// askHolder sends one request to container dir's holder.
func askHolder(dir string, req holderRequest) (holderReply, error) {
	var rep holderReply
	c, err := net.DialTimeout("unix", filepath.Join(dir, holderSock), 5*time.Second)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return rep, err
	}
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return rep, err
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// TemplateInfo is a template container's frozen state as its holder
// reports it; errdefs.ErrConflict while it has not signalled readiness,
// ErrInvalid for a container that is no template.
func (c *Container) TemplateInfo() (Frozen, error) {
	if !c.rec.Boot.Template {
		return Frozen{}, invalid("container %s is not a template (%s=true)", c.rec.ID, AnnotationTemplate)
	}
	dir := c.root.dir(c.rec.ID)
	if _, err := os.Stat(filepath.Join(dir, frozenFile)); err != nil {
		if b, _ := os.ReadFile(filepath.Join(dir, holderLog)); len(b) > 0 {
			return Frozen{}, fmt.Errorf("template %s is not frozen; its holder says: %s", c.rec.ID, b)
		}
		return Frozen{}, fmt.Errorf("template %s is not frozen yet: its process signals readiness by stopping itself (SIGSTOP): %w", c.rec.ID, errdefs.ErrConflict)
	}
	rep, err := askHolder(dir, holderRequest{Op: "info"})
	if err != nil {
		return Frozen{}, fmt.Errorf("template %s: its holder: %w", c.rec.ID, err)
	}
	return *rep.Frozen, nil
}

// stopHolder ends a template's holder (SIGTERM: it kills and reaps the
// template), then waits for it to be gone.
func (rec *record) stopHolder() {
	if rec.Holder <= 0 {
		return
	}
	alive := func() bool { t, ok := procStart(rec.Holder); return ok && t == rec.HolderStart }
	if !alive() {
		return
	}
	_ = unix.Kill(rec.Holder, unix.SIGTERM)
	for deadline := time.Now().Add(10 * time.Second); alive() && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	if alive() {
		_ = unix.Kill(rec.Holder, unix.SIGKILL)
	}
}
