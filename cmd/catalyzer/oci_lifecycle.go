package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/oci"
)

// create, start, run, kill, delete: the verbs containerd's shim drives a
// container's life with.

func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "bundle directory (holding config.json)", Value: "."},
		&cli.StringFlag{Name: "pid-file", Usage: "write the pid the shim reaps here"},
		&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master (process.terminal)"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "move the root over / and chroot instead of pivot_root"},
		&cli.IntFlag{Name: "preserve-fds", Usage: "pass fds 3..3+N-1 to the container"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility"},
	}
}

func createOpts(cmd *cli.Command) oci.CreateOpts {
	return oci.CreateOpts{
		Bundle: cmd.String("bundle"), PidFile: cmd.String("pid-file"),
		ConsoleSocket: cmd.String("console-socket"), NoPivot: cmd.Bool("no-pivot"),
		PreserveFDs: int(cmd.Int("preserve-fds")),
	}
}

func ociCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a container from a bundle; its process waits for start",
		ArgsUsage: "ID",
		Flags:     createFlags(),
		Action: func(_ context.Context, cmd *cli.Command) error {
			id, err := ociID(cmd)
			if err != nil {
				return err
			}
			return ociRoot(cmd).Create(id, createOpts(cmd))
		},
	}
}

func ociStartCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "start a created container's process",
		ArgsUsage: "ID",
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			return c.Start()
		},
	}
}

func ociRunCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "create and start a container, wait for it, delete it, exit with its status",
		ArgsUsage: "ID",
		Flags:     append(createFlags(), &cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "do not wait"}),
		Action: func(_ context.Context, cmd *cli.Command) error {
			id, err := ociID(cmd)
			if err != nil {
				return err
			}
			r := ociRoot(cmd)
			if err := r.Create(id, createOpts(cmd)); err != nil {
				return err
			}
			c, err := r.Load(id)
			if err != nil {
				return err
			}
			if err := c.Start(); err != nil {
				_ = c.Delete(true)
				return err
			}
			if cmd.Bool("detach") {
				return nil
			}
			// The init is our child here.
			return reapAndDelete(c)
		},
	}
}

func ociKillCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal (default SIGTERM) to the container's init, or with --all to all its processes",
		ArgsUsage: "ID [SIGNAL]",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "signal every process of the container"}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			sig := unix.SIGTERM
			if cmd.Args().Len() > 1 {
				if sig, err = parseSignal(cmd.Args().Get(1)); err != nil {
					return err
				}
			}
			return c.Kill(sig, cmd.Bool("all"))
		},
	}
}

func ociDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a stopped (with --force, any) container",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill it first if it runs"}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			return c.Delete(cmd.Bool("force"))
		},
	}
}

// reapAndDelete waits for c's init, which run and restore (without
// --detach) started as their own child, deletes the container and
// returns the init's status as this command's.
func reapAndDelete(c *oci.Container) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(c.Pid(), &ws, 0, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err := c.Delete(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	if ws.Signaled() {
		return exitStatus(128 + int(ws.Signal()))
	}
	return exitCode(ws.ExitStatus())
}
