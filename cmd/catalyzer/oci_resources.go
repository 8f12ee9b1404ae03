package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v3"
)

// pause, resume, update, events: a running container's cgroup.

func ociPauseCommand() *cli.Command {
	return &cli.Command{
		Name:      "pause",
		Usage:     "freeze every process of a running container (cgroup freezer)",
		ArgsUsage: "ID",
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			return c.Pause()
		},
	}
}

func ociResumeCommand() *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "thaw a paused container",
		ArgsUsage: "ID",
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			return c.Resume()
		},
	}
}

func ociUpdateCommand() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "apply new linux.resources (JSON) to a container's cgroup",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: `file holding the resources JSON, "-" for stdin`, Required: true}},
		Action: func(_ context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			var in io.Reader = os.Stdin
			if p := cmd.String("resources"); p != "-" {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			var res specs.LinuxResources
			if err := json.NewDecoder(in).Decode(&res); err != nil {
				return fmt.Errorf("update: resources: %w", err)
			}
			return c.Update(&res)
		},
	}
}

// ociEvent is one line of `events`, in runc's shape.
type ociEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

func ociEventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "print a container's resource usage as JSON events (every --interval, or once with --stats)",
		ArgsUsage: "ID",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "stats", Usage: "print one stats event and exit"},
			&cli.DurationFlag{Name: "interval", Usage: "time between stats events", Value: 5 * time.Second},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			c, err := ociLoad(cmd)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			for {
				st, err := c.Stats()
				if err != nil {
					return err
				}
				if err := enc.Encode(ociEvent{Type: "stats", ID: c.ID(), Data: st}); err != nil {
					return err
				}
				if cmd.Bool("stats") {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(cmd.Duration("interval")):
				}
			}
		},
	}
}
