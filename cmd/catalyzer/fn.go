package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/client"
)

func fnCommand() *cli.Command {
	return &cli.Command{
		Name:  "fn",
		Usage: "manage and invoke functions on a running daemon",
		Commands: []*cli.Command{
			{
				Name:      "deploy",
				Usage:     "deploy (create or replace) a function",
				ArgsUsage: "NAME",
				Flags: clientFlags(append(functionFlags(),
					&cli.StringFlag{Name: "code", Usage: "directory holding the function's code", Required: true},
					&cli.BoolFlag{Name: "by-path", Usage: "send the code's path instead of uploading it (the daemon must be on this host and run with a --code-root above it)"},
					&cli.IntFlag{Name: "memory", Usage: "memory limit in MiB (default 256)"},
					&cli.IntFlag{Name: "timeout", Usage: "invocation timeout in ms (default 30000)"},
					&cli.IntFlag{Name: "max-instances", Usage: "maximum live instances (default 10)"},
					&cli.StringSliceFlag{Name: "env", Usage: "KEY=VALUE for the function's environment (repeatable)"},
					&cli.StringFlag{Name: "network", Usage: `"none" (loopback only, default) or "host" (the daemon must run with --allow-host-network)`},
				)...),
				Action: fnDeploy,
			},
			{
				Name:      "invoke",
				Usage:     "invoke a function and print its result",
				ArgsUsage: "NAME",
				Flags: clientFlags(
					&cli.StringFlag{Name: "boot", Usage: "scratch, fork, cold, warm or auto", Value: "auto"},
					&cli.StringFlag{Name: "data", Usage: "event JSON; '-' reads it from stdin", Value: "{}"},
					&cli.BoolFlag{Name: "logs", Usage: "print the handler's stdout/stderr and boot details to stderr"},
				),
				Action: fnInvoke,
			},
			{Name: "ls", Usage: "list functions", Flags: clientFlags(), Action: fnList},
			{Name: "show", Usage: "show a function as JSON", ArgsUsage: "NAME", Flags: clientFlags(), Action: fnShow},
			{Name: "rm", Usage: "delete a function", ArgsUsage: "NAME", Flags: clientFlags(), Action: fnRemove},
		},
	}
}

// nameArg returns the single NAME argument.
func nameArg(cmd *cli.Command) (string, error) {
	if cmd.Args().Len() != 1 {
		return "", fmt.Errorf("%s: give exactly one function NAME", cmd.Name)
	}
	return cmd.Args().First(), nil
}

// nameAndClient is the NAME argument and a client of the daemon, for
// the verbs that need nothing else.
func nameAndClient(cmd *cli.Command) (string, *client.Client, error) {
	name, err := nameArg(cmd)
	if err != nil {
		return "", nil, err
	}
	c, err := newClient(cmd)
	return name, c, err
}

func fnDeploy(ctx context.Context, cmd *cli.Command) error {
	name, err := nameArg(cmd)
	if err != nil {
		return err
	}
	code, err := filepath.Abs(cmd.String("code"))
	if err != nil {
		return err
	}
	req := wire.DeployRequest{
		Runtime: cmd.String("runtime"), Handler: cmd.String("handler"),
		MemoryMB: int(cmd.Int("memory")), TimeoutMs: int(cmd.Int("timeout")),
		MaxInstances: int(cmd.Int("max-instances")), Network: cmd.String("network"),
	}
	if env := cmd.StringSlice("env"); len(env) > 0 {
		req.Env = map[string]string{}
		for _, kv := range env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--env %q: want KEY=VALUE", kv)
			}
			req.Env[k] = v
		}
	}
	if cmd.Bool("by-path") {
		req.CodePath = code
	} else if req.CodeTgzB64, err = client.TarGzBase64(code); err != nil {
		return err
	}
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	f, err := c.Deploy(ctx, name, req)
	if err != nil {
		return err
	}
	fmt.Printf("deployed %s (%s, %s, code %s)\n", f.Name, f.Runtime, f.Handler, f.CodeDigest)
	return nil
}

func fnInvoke(ctx context.Context, cmd *cli.Command) error {
	name, err := nameArg(cmd)
	if err != nil {
		return err
	}
	data := []byte(cmd.String("data"))
	if cmd.String("data") == "-" {
		if data, err = io.ReadAll(os.Stdin); err != nil {
			return err
		}
	}
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	inv, err := c.Invoke(ctx, name, cmd.String("boot"), data)
	if cmd.Bool("logs") {
		fmt.Fprintf(os.Stderr, "boot=%s reused=%v boot_us=%d accept_us=%d instance=%s\n", inv.Boot, inv.Reused, inv.BootUs, inv.AcceptUs, inv.Instance)
		for _, k := range inv.Order {
			fmt.Fprintf(os.Stderr, "  phase %-10s %d µs\n", k, inv.Phases[k])
		}
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		if cmd.Bool("logs") {
			os.Stderr.WriteString(ae.Stdout)
			os.Stderr.WriteString(ae.Stderr)
			if ae.Trace != "" {
				fmt.Fprintln(os.Stderr, ae.Trace)
			}
		}
		return err
	}
	if err != nil {
		return err
	}
	if cmd.Bool("logs") {
		os.Stderr.WriteString(inv.Stdout)
		os.Stderr.WriteString(inv.Stderr)
	}
	os.Stdout.Write(inv.Output)
	if len(inv.Output) > 0 && inv.Output[len(inv.Output)-1] != '\n' {
		fmt.Println()
	}
	return nil
}

func fnList(ctx context.Context, cmd *cli.Command) error {
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	fns, err := c.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRUNTIME\tHANDLER\tMEMORY\tTIMEOUT\tMAX\tUPDATED")
	for _, f := range fns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%dMiB\t%dms\t%d\t%s\n", f.Name, f.Runtime, f.Handler, f.MemoryMB, f.TimeoutMs, f.MaxInstances, f.UpdatedAt.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func fnShow(ctx context.Context, cmd *cli.Command) error {
	name, c, err := nameAndClient(cmd)
	if err != nil {
		return err
	}
	f, err := c.Get(ctx, name)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

func fnRemove(ctx context.Context, cmd *cli.Command) error {
	name, c, err := nameAndClient(cmd)
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, name); err != nil {
		return err
	}
	fmt.Printf("deleted %s\n", name)
	return nil
}
