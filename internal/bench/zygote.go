package bench

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/boot"
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
	replies, theirs, err := os.Pipe()
	if err != nil {
		return zygote, kfork, fmt.Errorf("zygote: %w", err)
	}
	defer replies.Close()
	cmd := exec.CommandContext(ctx, runtimes.Python, "-c", zygotePy, codeDir, handler)
	cmd.Dir = codeDir
	cmd.Env = boot.InstanceEnv(boot.Function{Name: "zygote", Runtime: runtime})
	cmd.ExtraFiles = []*os.File{theirs}
	stderr, err := os.CreateTemp("", "catalyzer-bench-zygote-")
	if err != nil {
		replies.Close()
		theirs.Close()
		return zygote, kfork, fmt.Errorf("zygote: %w", err)
	}
	os.Remove(stderr.Name())
	defer stderr.Close()
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		theirs.Close()
		return zygote, kfork, fmt.Errorf("zygote: %w", err)
	}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return zygote, kfork, fmt.Errorf("zygote: start %s: %w", runtimes.Python, err)
	}
	theirs.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	fail := func(err error) (BaselineResult, BaselineResult, error) {
		b := make([]byte, 4<<10)
		k, _ := stderr.ReadAt(b, 0)
		return BaselineResult{}, BaselineResult{}, fmt.Errorf("zygote: %w (stderr: %q)", err, bytes.TrimSpace(b[:k]))
	}
	rd := bufio.NewReader(replies)
	read := func() (zygoteSample, error) {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return zygoteSample{}, err
		}
		var s zygoteSample
		return s, json.Unmarshal(line, &s)
	}
	if s, err := read(); err != nil || !s.Ready {
		return fail(fmt.Errorf("import of %s failed: %v", handler, err))
	}
	if len(event) == 0 {
		event = []byte("{}")
	}
	line := append(bytes.ReplaceAll(bytes.TrimSpace(event), []byte("\n"), []byte(" ")), '\n')
	var entry, total, fork []int64
	for i := 0; i < n; i++ {
		if _, err := stdin.Write(line); err != nil {
			return fail(err)
		}
		s, err := read()
		if err != nil {
			return fail(err)
		}
		if s.Error != "" || s.EntryNS == 0 {
			return fail(fmt.Errorf("the handler failed in a child: %s", s.Error))
		}
		entry = append(entry, (s.EntryNS-s.StartNS)/1000)
		total = append(total, (s.DoneNS-s.StartNS)/1000)
		fork = append(fork, (s.ForkedNS-s.StartNS)/1000)
	}
	zygote = BaselineResult{Entry: Summarize(entry), Total: Summarize(total), EntrySamples: entry, TotalSamples: total}
	kfork = BaselineResult{Entry: Summarize(fork), EntrySamples: fork}
	return zygote, kfork, nil
}
