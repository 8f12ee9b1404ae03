package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name: "restore",
		Usage: "restore a process from an image directory on the host, in the host namespaces " +
			"(it gets a new pid: original PID reuse is not supported)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "image", Usage: "image directory", Required: true},
			&cli.BoolFlag{Name: "detach", Usage: "exit once the process runs (default: wait for it and exit with its status)"},
			&cli.StringFlag{Name: "pid-file", Usage: "write the restored pid to this file"},
			&cli.BoolFlag{Name: "prefetch", Usage: "read the image's working set (ws.bin) before resuming"},
			&cli.BoolFlag{Name: "stats", Usage: "print the restore phases to stderr"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if os.Geteuid() != 0 {
				return errors.New("restore needs root (ptrace, PR_SET_MM_MAP with an exe file)")
			}
			img, err := image.Open(cmd.String("image"))
			if err != nil {
				return err
			}
			// Reconnected fds (only 0, 1, 2 from the CLI) get ours.
			std := []*os.File{os.Stdin, os.Stdout, os.Stderr}
			var files []*os.File
			reconnect := map[int]int{}
			for _, fd := range img.FDs {
				if fd.Kind != image.FDReconnect {
					continue
				}
				if fd.Fd < 0 || fd.Fd > 2 {
					return fmt.Errorf("image fd %d must be reconnected; the CLI reconnects only 0, 1 and 2", fd.Fd)
				}
				reconnect[int(fd.Fd)] = 3 + len(files)
				files = append(files, std[fd.Fd])
			}
			tr := ptrace.NewTracer()
			defer tr.Close()
			c, tc, err := image.StartRestorer(tr, files)
			if err != nil {
				return err
			}
			pid, st, err := image.Restore(tr, img, image.Restorer{Tracee: tc, Reconnect: reconnect, Prefetch: cmd.Bool("prefetch")})
			if err != nil {
				c.Wait()
				return err
			}
			if cmd.Bool("stats") {
				for _, p := range st.Phases {
					fmt.Fprintf(os.Stderr, "%-16s %v\n", p.Name, p.D)
				}
				fmt.Fprintf(os.Stderr, "%-16s %v (%d plan entries, %d ptrace stops)\n", "total", st.Total, st.Entries, st.RoundTrips)
			}
			if f := cmd.String("pid-file"); f != "" {
				if err := os.WriteFile(f, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
					return err
				}
			}
			if cmd.Bool("detach") {
				c.Process.Release()
				return nil
			}
			err = c.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			return err
		},
	}
}
