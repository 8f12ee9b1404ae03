package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/oci"
)

// state, list, ps: what the runtime can say about its containers.

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ociStateCommand() *cli.Command {
	return &cli.Command{
		Name:      "state",
		Usage:     "print a container's state as runc's JSON",
		ArgsUsage: "ID",
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			return printJSON(c.State())
		},
	}
}

func ociListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the containers under --root",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "table or json", Value: "table"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "ids only"},
		},
		Action: func(_ context.Context, cmd *cli.Command) error {
			r := ociRoot(cmd)
			ids, err := r.List()
			if err != nil {
				return err
			}
			states := []oci.StateJSON{}
			for _, id := range ids {
				if c, err := r.Load(id); err == nil {
					states = append(states, c.State())
				}
			}
			switch {
			case cmd.Bool("quiet"):
				for _, s := range states {
					fmt.Println(s.ID)
				}
			case cmd.String("format") == "json":
				return json.NewEncoder(os.Stdout).Encode(states)
			default:
				w := tabwriter.NewWriter(os.Stdout, 8, 1, 3, ' ', 0)
				fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED")
				for _, s := range states {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format("2006-01-02T15:04:05.999999999Z"))
				}
				return w.Flush()
			}
			return nil
		},
	}
}

func ociPsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "list the processes of a container (host pids)",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "table or json", Value: "table"}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			pids, err := c.Processes()
			if err != nil {
				return err
			}
			if pids == nil {
				pids = []int{}
			}
			if cmd.String("format") == "json" {
				return json.NewEncoder(os.Stdout).Encode(pids)
			}
			w := tabwriter.NewWriter(os.Stdout, 8, 1, 3, ' ', 0)
			fmt.Fprintln(w, "PID\tCMD")
			for _, p := range pids {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
				fmt.Fprintf(w, "%d\t%s\n", p, strings.TrimSpace(string(comm)))
			}
			return w.Flush()
		},
	}
}
