package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name: "restore",
		Usage: "restore a process from an image directory: in the host namespaces with its original pid when " +
			"that pid is free (else a new one), or (--sandbox) in a new sandbox, as PID 1 of its own PID namespace",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "image", Usage: "image directory", Required: true},
			&cli.BoolFlag{Name: "detach", Usage: "exit once the process runs (default: wait for it and exit with its status)"},
			&cli.StringFlag{Name: "pid-file", Usage: "write the restored pid to this file"},
			&cli.BoolFlag{Name: "prefetch", Usage: "read the image's working set (ws.bin) before resuming"},
			&cli.BoolFlag{Name: "stats", Usage: "print the restore phases to stderr"},
			&cli.BoolFlag{Name: "new-pid", Usage: "do not try to get the original pid back (host restore)"},
			&cli.BoolFlag{Name: "sandbox", Usage: "restore into a new sandbox (namespaces, overlay root, cgroup, Docker's capabilities and seccomp profile); waits for the process"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if os.Geteuid() != 0 {
				return errors.New("restore needs root (ptrace, PR_SET_MM_MAP with an exe file)")
			}
			img, err := image.Open(cmd.String("image"))
			if err != nil {
				return err
			}
			files, reconnect, err := reconnectStdio(img)
			if err != nil {
				return err
			}
			tr := ptrace.NewTracer()
			defer tr.Close()
			if cmd.Bool("sandbox") {
				if cmd.Bool("detach") {
					return errors.New("--sandbox cannot --detach: the sandbox is torn down when the process exits, by this command")
				}
				return restoreInSandbox(tr, img, files, reconnect, cmd.Bool("prefetch"), cmd.Bool("stats"), cmd.String("pid-file"))
			}
			return restoreOnHost(tr, img, files, reconnect, cmd)
		},
	}
}

// reconnectStdio gives the image's reconnected fds ours: the files to
// pass, and where each fd finds its file among them (from fd 3). The CLI
// reconnects only 0, 1 and 2.
func reconnectStdio(img *image.Image) ([]*os.File, map[int]int, error) {
	std := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	var files []*os.File
	reconnect := map[int]int{}
	for _, fd := range img.FDs {
		if fd.Kind != image.FDReconnect {
			continue
		}
		if fd.Fd < 0 || fd.Fd > 2 {
			return nil, nil, fmt.Errorf("image fd %d must be reconnected; the CLI reconnects only 0, 1 and 2", fd.Fd)
		}
		reconnect[int(fd.Fd)] = 3 + len(files)
		files = append(files, std[fd.Fd])
	}
	return files, reconnect, nil
}

// restoreOnHost restores img in the host namespaces, then waits for the
// process (its exit status is this command's) unless --detach.
func restoreOnHost(tr *ptrace.Tracer, img *image.Image, files []*os.File, reconnect map[int]int, cmd *cli.Command) error {
	proc, tc, err := startRestorer(tr, img, files, cmd.Bool("new-pid"))
	if err != nil {
		return err
	}
	pid, st, err := image.Restore(tr, img, image.RestoreOptions{Tracee: tc, Reconnect: reconnect, Prefetch: cmd.Bool("prefetch")})
	if err != nil {
		proc.Wait()
		return err
	}
	if cmd.Bool("stats") {
		printStats(st)
	}
	if err := writePidFile(cmd.String("pid-file"), pid); err != nil {
		return err
	}
	if cmd.Bool("detach") {
		proc.Release()
		return nil
	}
	ps, err := proc.Wait()
	if err != nil {
		return err
	}
	return exitCode(ps.ExitCode())
}

// startRestorer starts the process img is restored into: with img's pid
// unless newPid, or when that pid cannot be had (it says so), a new one.
func startRestorer(tr *ptrace.Tracer, img *image.Image, files []*os.File, newPid bool) (*os.Process, *ptrace.Tracee, error) {
	if !newPid {
		proc, tc, err := image.StartRestorerAsPid(tr, files, img.Pid(), img.ExecAddr())
		if err != nil {
			fmt.Fprintf(os.Stderr, "catalyzer: %v; restoring with a new pid (libc's cached thread id will be stale)\n", err)
		}
		if proc != nil {
			return proc, tc, nil
		}
	}
	c, tc, err := image.StartRestorer(tr, files)
	if err != nil {
		return nil, nil, err
	}
	return c.Process, tc, nil
}

// writePidFile writes pid to file, if one was asked for.
func writePidFile(file string, pid int) error {
	if file == "" {
		return nil
	}
	return os.WriteFile(file, []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// restoreInSandbox restores img into a fresh sandbox (boot.RestoreInSandbox),
// waits for the process and tears the sandbox down; a non-zero exit of
// the process is this command's.
func restoreInSandbox(tr *ptrace.Tracer, img *image.Image, files []*os.File, reconnect map[int]int, prefetch, stats bool, pidFile string) error {
	rs, err := boot.RestoreInSandbox(tr, img, files, reconnect, prefetch)
	if err != nil {
		return err
	}
	defer rs.Close()
	if stats {
		printStats(rs.Stats)
	}
	if err := writePidFile(pidFile, rs.Pid); err != nil {
		return err
	}
	code, err := rs.Wait()
	if err != nil {
		return err
	}
	return exitCode(code)
}

// printStats prints a restore's phases to stderr.
func printStats(st image.Stats) {
	for _, p := range st.Phases {
		fmt.Fprintf(os.Stderr, "%-16s %v\n", p.Name, p.D)
	}
	fmt.Fprintf(os.Stderr, "%-16s %v (%d plan entries, %d ptrace stops)\n", "total", st.Total, st.Entries, st.RoundTrips)
}
