package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

func checkpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "checkpoint",
		Usage: "dump a process, all its threads, into an image directory (restore it with 'catalyzer restore')",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "pid", Usage: "process to checkpoint", Required: true},
			&cli.StringFlag{Name: "image", Usage: "image directory (created)", Required: true},
			&cli.BoolFlag{Name: "leave-running", Usage: "let the process go on after the dump (default: kill it)"},
			&cli.BoolFlag{Name: "leave-stopped", Usage: "leave the process stopped (SIGSTOP) after the dump"},
			&cli.BoolFlag{Name: "map-pages", Usage: "restore anonymous memory as private mappings of pages.img (faster, page cache shared; MADV_DONTNEED then brings back the checkpoint's bytes, not zeros)"},
			&cli.IntSliceFlag{Name: "reconnect", Usage: "fds (0, 1, 2) not dumped: restore gives its own stdin/stdout/stderr in their place"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if os.Geteuid() != 0 {
				return errors.New("checkpoint needs root (ptrace, /proc/PID/pagemap)")
			}
			// Faithful over fast: anonymous memory stays anonymous
			// (MADV_DONTNEED zeroes it); --map-pages maps pages.img.
			opts := image.Options{Leave: image.LeaveKilled, CopyAnon: !cmd.Bool("map-pages")}
			switch {
			case cmd.Bool("leave-running") && cmd.Bool("leave-stopped"):
				return errors.New("--leave-running and --leave-stopped exclude each other")
			case cmd.Bool("leave-running"):
				opts.Leave = image.LeaveRunning
			case cmd.Bool("leave-stopped"):
				opts.Leave = image.LeaveStopped
			}
			for _, fd := range cmd.IntSlice("reconnect") {
				if fd < 0 || fd > 2 {
					return fmt.Errorf("--reconnect %d: only 0, 1 and 2 can be reconnected from the command line", fd)
				}
				opts.Reconnect = append(opts.Reconnect, int(fd))
			}
			tr := ptrace.NewTracer()
			defer tr.Close()
			img, err := image.Checkpoint(tr, int(cmd.Int("pid")), cmd.String("image"), opts)
			if err != nil {
				return err
			}
			fmt.Printf("checkpointed %d into %s: %d mappings, %d fds, pages.img %d bytes\n",
				img.Pid(), img.Dir, len(img.VMAs), len(img.FDs), img.PagesSize())
			return nil
		},
	}
}
