package main

import (
	"context"
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/oci"
)

var one = 1

func ociExecCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a process in a running container",
		ArgsUsage: "ID [COMMAND [ARG...]]",
		// Flags after the id belong to COMMAND.
		StopOnNthArg: &one,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "process JSON (runtime-spec process); else COMMAND"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return once it runs (else wait and exit with its status)"},
			&cli.StringFlag{Name: "pid-file", Usage: "write its pid here"},
			&cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give it a terminal (with COMMAND)"},
			&cli.StringFlag{Name: "cwd", Usage: "working directory (with COMMAND)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "extra environment (with COMMAND)"},
			&cli.IntFlag{Name: "preserve-fds", Usage: "pass fds 3..3+N-1 to the process"},
		},
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			var p *specs.Process
			if f := cmd.String("process"); f != "" {
				if p, err = oci.ReadProcess(f); err != nil {
					return err
				}
			} else {
				args := cmd.Args().Slice()[1:]
				if len(args) == 0 {
					return errors.New("exec: --process or a COMMAND is required")
				}
				b, err := oci.LoadBundle(c.Bundle())
				if err != nil {
					return err
				}
				q := *b.Spec.Process
				q.Args, q.Terminal = args, cmd.Bool("tty")
				q.Env = append(append([]string{}, q.Env...), cmd.StringSlice("env")...)
				if d := cmd.String("cwd"); d != "" {
					q.Cwd = d
				}
				p = &q
			}
			proc, err := c.Exec(oci.ExecOpts{
				Process: p, PidFile: cmd.String("pid-file"), ConsoleSocket: cmd.String("console-socket"),
				PreserveFDs: int(cmd.Int("preserve-fds")),
			})
			if err != nil {
				return err
			}
			if cmd.Bool("detach") {
				return proc.Release()
			}
			st, err := proc.Wait()
			if err != nil {
				return err
			}
			if ws, ok := st.Sys().(interface{ Signal() os.Signal }); ok && st.ExitCode() < 0 {
				_ = ws
				return exitStatus(137)
			}
			return exitCode(st.ExitCode())
		},
	}
}
