package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/oci"
)

// checkpoint and restore: runc's verbs, as containerd's shim calls them
// (go-runc's CheckpointOpts and RestoreOpts), on catalyzer's own image
// engine instead of CRIU.

// criuFlags are the CRIU options runc's checkpoint and restore take.
// Those that allow something (open TCP connections, external unix
// sockets, a shell job, file locks) are accepted: the image engine then
// dumps what it can restore faithfully and refuses the rest by name.
// Those that ask for another way of dumping are refused.
func criuFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "image-path", Usage: "image directory"},
		&cli.StringFlag{Name: "work-path", Usage: "directory for the log of the dump or restore"},
		&cli.BoolFlag{Name: "tcp-established", Usage: "accepted: an open TCP connection is refused by name"},
		&cli.BoolFlag{Name: "ext-unix-sk", Usage: "accepted: a unix socket to outside is refused by name"},
		&cli.BoolFlag{Name: "shell-job", Usage: "accepted: a terminal is refused by name"},
		&cli.BoolFlag{Name: "file-locks", Usage: "accepted: file locks are refused by name"},
		&cli.StringFlag{Name: "manage-cgroups-mode", Usage: "accepted: cgroups are the bundle's at restore, never dumped"},
		&cli.StringSliceFlag{Name: "empty-ns", Usage: "accepted: namespaces are the bundle's at restore, never dumped"},
		&cli.BoolFlag{Name: "auto-dedup", Usage: "accepted (pages are written once)"},
		&cli.StringFlag{Name: "parent-path", Usage: "refused: incremental images are not supported"},
		&cli.BoolFlag{Name: "lazy-pages", Usage: "refused: pages fault in from the image file anyway"},
		&cli.StringFlag{Name: "page-server", Usage: "refused: no page server"},
	}
}

// refusedCriuFlags names the CRIU ways of working this engine does not
// have.
func refusedCriuFlags(cmd *cli.Command) error {
	for _, f := range []string{"parent-path", "page-server"} {
		if cmd.String(f) != "" {
			return fmt.Errorf("--%s: not supported by catalyzer's image engine (one full image per checkpoint): %w", f, errdefs.ErrNotSupported)
		}
	}
	for _, f := range []string{"lazy-pages", "pre-dump"} {
		if cmd.IsSet(f) && cmd.Bool(f) {
			return fmt.Errorf("--%s: not supported by catalyzer's image engine (restored pages fault in from the image file): %w", f, errdefs.ErrNotSupported)
		}
	}
	if m := cmd.String("manage-cgroups-mode"); m != "" && m != "soft" && m != "full" && m != "strict" && m != "ignore" {
		return fmt.Errorf("--manage-cgroups-mode %q: want soft, full, strict or ignore", m)
	}
	return nil
}

func ociCheckpointCommand() *cli.Command {
	return &cli.Command{
		Name:      "checkpoint",
		Usage:     "dump a running container's process into an image directory (then kill it, unless --leave-running)",
		ArgsUsage: "ID",
		Flags: append(criuFlags(),
			&cli.BoolFlag{Name: "leave-running", Usage: "let the container go on after the dump"},
			&cli.BoolFlag{Name: "pre-dump", Usage: "refused: no incremental dumps"},
			&cli.IntFlag{Name: "status-fd", Usage: "accepted: closed once the dump is done"},
		),
		Action: func(_ context.Context, cmd *cli.Command) error {
			if err := refusedCriuFlags(cmd); err != nil {
				return err
			}
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			err = c.Checkpoint(oci.CheckpointOpts{ImagePath: cmd.String("image-path"), WorkPath: cmd.String("work-path"),
				LeaveRunning: cmd.Bool("leave-running")})
			if fd := cmd.Int("status-fd"); cmd.IsSet("status-fd") && fd > 2 {
				unix.Close(int(fd))
			}
			return err
		},
	}
}

func ociRestoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "create a container from a bundle with its process restored from an image directory (running)",
		ArgsUsage: "ID",
		Flags: append(criuFlags(),
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "bundle directory (holding config.json)", Value: "."},
			&cli.StringFlag{Name: "pid-file", Usage: "write the pid the shim reaps here"},
			&cli.StringFlag{Name: "console-socket", Usage: "refused with process.terminal: a restored process keeps no terminal"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return once it runs (else wait, delete it and exit with its status)"},
			&cli.BoolFlag{Name: "no-subreaper", Usage: "accepted: the restored process is our child, the caller's once we exit"},
			&cli.BoolFlag{Name: "no-pivot", Usage: "move the root over / and chroot instead of pivot_root"},
			&cli.StringFlag{Name: "lsm-profile", Usage: "refused: no LSM profiles"},
			&cli.StringFlag{Name: "lsm-mount-context", Usage: "refused: no LSM mount contexts"},
		),
		Action: func(_ context.Context, cmd *cli.Command) error {
			if err := refusedCriuFlags(cmd); err != nil {
				return err
			}
			for _, f := range []string{"lsm-profile", "lsm-mount-context"} {
				if cmd.String(f) != "" {
					return fmt.Errorf("--%s: no LSM support in this runtime: %w", f, errdefs.ErrNotSupported)
				}
			}
			id, err := ociID(cmd)
			if err != nil {
				return err
			}
			r := ociRoot(cmd)
			o := oci.RestoreOpts{
				CreateOpts: oci.CreateOpts{Bundle: cmd.String("bundle"), PidFile: cmd.String("pid-file"),
					ConsoleSocket: cmd.String("console-socket"), NoPivot: cmd.Bool("no-pivot")},
				ImagePath: cmd.String("image-path"), WorkPath: cmd.String("work-path"),
			}
			if err := r.Restore(id, o); err != nil {
				return err
			}
			if cmd.Bool("detach") {
				return nil
			}
			c, err := r.Load(id)
			if err != nil {
				return err
			}
			// The restored process is our child here.
			return reapAndDelete(c)
		},
	}
}
