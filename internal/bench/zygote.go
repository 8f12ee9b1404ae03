package bench

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/cleanup"
)

// zygotePy is the zygote floor's program (see runZygote).
//
//go:embed zygote.py
var zygotePy string

// Baseline names of the zygote floor: the zygote's fork to its result
// (start to response) and to handler entry, and the kernel fork alone
// (fork start to its return in the parent).
const (
	Zygote     = "zygote"
	KernelFork = "kernel-fork"
)

// zygoteSample is one line the zygote answers.
type zygoteSample struct {
	StartNS  int64  `json:"start_ns"`
	ForkedNS int64  `json:"forked_ns"`
	EntryNS  int64  `json:"entry_ns"`
	DoneNS   int64  `json:"done_ns"`
	Error    string `json:"error"`
	Ready    bool   `json:"ready"`
}

// runZygote measures the floor every boot mode is compared with: a bare
// Python process that imported the function's handler forks n times; each
// child parses the event and runs the handler, the parent reads its
// result. No sandbox, no agent protocol, no HTTP. It returns the zygote
// (fork start to handler entry, and to the result read) and the kernel
// fork of that process (fork start to fork's return in the parent).
func runZygote(ctx context.Context, runtime, handler, codeDir string, event []byte, n int) (zygote, kfork BaselineResult, err error) {
	if runtime != "python" {
		return zygote, kfork, fmt.Errorf("the zygote floor is written for python; this function is %s", runtime)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	z, err := startZygote(ctx, handler, codeDir)
	if err != nil {
		return zygote, kfork, fmt.Errorf("zygote: %w", err)
	}
	defer z.stop()
	if s, err := z.read(); err != nil || !s.Ready {
		return zygote, kfork, z.fail(fmt.Errorf("import of %s failed: %v", handler, err))
	}
	if len(event) == 0 {
		event = []byte("{}")
	}
	line := append(bytes.ReplaceAll(bytes.TrimSpace(event), []byte("\n"), []byte(" ")), '\n')
	var entry, total, fork []int64
	for i := 0; i < n; i++ {
		s, err := z.fork(line)
		if err != nil {
			return zygote, kfork, z.fail(err)
		}
		entry = append(entry, (s.EntryNS-s.StartNS)/1000)
		total = append(total, (s.DoneNS-s.StartNS)/1000)
		fork = append(fork, (s.ForkedNS-s.StartNS)/1000)
	}
	zygote = BaselineResult{Entry: Summarize(entry), Total: Summarize(total), EntrySamples: entry, TotalSamples: total}
	kfork = BaselineResult{Entry: Summarize(fork), EntrySamples: fork}
	return zygote, kfork, nil
}

// zygoteProc is a running zygote: it reads events on its stdin, one a
// line, forks a child for each, and answers a zygoteSample a line on the
// replies pipe (its fd 3); the first line says it imported the handler.
type zygoteProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies *os.File
	rd      *bufio.Reader
	stderr  *os.File // unlinked: read back for the error of a failed run
}

// startZygote starts the zygote for handler in codeDir, killed when ctx
// ends. On error nothing of it remains.
func startZygote(ctx context.Context, handler, codeDir string) (*zygoteProc, error) {
	var cl cleanup.Cleanup
	defer cl.Clean()
	replies, theirs, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cl.Add(func() { replies.Close() })
	defer theirs.Close() // the zygote's end: its copy is all it needs
	stderr, err := os.CreateTemp("", "catalyzer-bench-zygote-")
	if err != nil {
		return nil, err
	}
	os.Remove(stderr.Name())
	cl.Add(func() { stderr.Close() })
	cmd := exec.CommandContext(ctx, runtimes.Python, "-c", zygotePy, codeDir, handler)
	cmd.Dir = codeDir
	cmd.Env = boot.InstanceEnv(boot.Function{Name: "zygote", Runtime: "python"})
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", runtimes.Python, err)
	}
	cl.Release()
	return &zygoteProc{cmd: cmd, stdin: stdin, replies: replies, rd: bufio.NewReader(replies), stderr: stderr}, nil
}

// read returns the zygote's next answer.
func (z *zygoteProc) read() (zygoteSample, error) {
	line, err := z.rd.ReadBytes('\n')
	if err != nil {
		return zygoteSample{}, err
	}
	var s zygoteSample
	return s, json.Unmarshal(line, &s)
}

// fork has the zygote fork a child that runs the handler on the event
// line, and returns its timings.
func (z *zygoteProc) fork(line []byte) (zygoteSample, error) {
	if _, err := z.stdin.Write(line); err != nil {
		return zygoteSample{}, err
	}
	s, err := z.read()
	if err != nil {
		return zygoteSample{}, err
	}
	if s.Error != "" || s.EntryNS == 0 {
		return zygoteSample{}, fmt.Errorf("the handler failed in a child: %s", s.Error)
	}
	return s, nil
}

// fail is err with what the zygote wrote on stderr.
func (z *zygoteProc) fail(err error) error {
	b := make([]byte, 4<<10)
	k, _ := z.stderr.ReadAt(b, 0)
	return fmt.Errorf("zygote: %w (stderr: %q)", err, bytes.TrimSpace(b[:k]))
}

// stop kills the zygote, reaps it and closes its files.
func (z *zygoteProc) stop() {
	z.stdin.Close()
	z.cmd.Process.Kill()
	z.cmd.Wait()
	z.replies.Close()
	z.stderr.Close()
}
