package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/sandbox"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "boot one instance from a code directory, invoke it once, tear it down (no daemon)",
		Flags: append(functionFlags(),
			&cli.StringFlag{Name: "code", Usage: "directory holding the function's code", Required: true},
			&cli.StringFlag{Name: "data", Usage: "event JSON", Value: "{}"},
			&cli.IntFlag{Name: "memory", Usage: "memory limit in MiB", Value: platform.DefaultMemoryMB},
			&cli.IntFlag{Name: "timeout", Usage: "timeout in ms", Value: platform.DefaultTimeoutMs},
			&cli.BoolFlag{Name: "userns", Usage: "run in a user namespace"},
			&cli.BoolFlag{Name: "network-host", Usage: "share the host's network (default: loopback only)"},
			&cli.BoolFlag{Name: "logs", Usage: "print the handler's stdout/stderr and boot phases to stderr"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if os.Geteuid() != 0 {
				return errors.New("run needs root (namespaces, mounts, cgroups); run it as root")
			}
			code, err := filepath.Abs(cmd.String("code"))
			if err != nil {
				return err
			}
			rt, err := runtimes.Lookup(cmd.String("runtime"))
			if err != nil {
				return err
			}
			if err := rt.CheckHandler(code, cmd.String("handler")); err != nil {
				return err
			}
			agents, err := os.MkdirTemp("", "catalyzer-run-agents-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(agents)
			if err := runtimes.InstallAgents(agents); err != nil {
				return err
			}
			f := boot.Function{
				Name: "run", Runtime: rt.Name, Handler: cmd.String("handler"), CodeDir: code,
				MemoryMB: int(cmd.Int("memory")), TimeoutMs: int(cmd.Int("timeout")),
				UserNS: cmd.Bool("userns"), NetworkHost: cmd.Bool("network-host"),
			}
			eng := &boot.Scratch{AgentDir: agents, CgroupParent: "catalyzer-run"}
			defer sandbox.Tidy(eng.CgroupParent)
			inst, err := eng.Boot(ctx, f)
			if err != nil {
				return err
			}
			defer inst.Destroy()
			timeout := time.Duration(f.TimeoutMs) * time.Millisecond
			ictx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res, err := inst.Invoke(ictx, 1, []byte(cmd.String("data")), time.Now().Add(timeout))
			if cmd.Bool("logs") {
				fmt.Fprintf(os.Stderr, "boot start to handler entry: %d µs\n", (res.EntryNS-inst.BootStart)/1000)
				for _, ph := range inst.Phases {
					fmt.Fprintf(os.Stderr, "  phase %-10s %d µs\n", ph.Name, ph.D.Microseconds())
				}
				os.Stderr.WriteString(res.Stdout)
				os.Stderr.WriteString(res.Stderr)
			}
			var fe *agent.FunctionError
			if errors.As(err, &fe) {
				if cmd.Bool("logs") {
					os.Stderr.WriteString(fe.Stdout + fe.Stderr + fe.Trace)
				}
				return fmt.Errorf("%s: %s", fe.Type, fe.Message)
			}
			if err != nil {
				return err
			}
			fmt.Println(string(res.Output))
			return nil
		},
	}
}
