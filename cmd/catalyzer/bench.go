package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "boot N fresh instances of a deployed function and report latency percentiles, phases and baselines",
		Flags: clientFlags(
			&cli.StringFlag{Name: "function", Usage: "deployed function to boot", Required: true},
			&cli.StringFlag{Name: "boot", Usage: "scratch, fork, cold or warm", Value: "scratch"},
			&cli.IntFlag{Name: "n", Aliases: []string{"N"}, Usage: "number of boots", Value: 50},
			&cli.IntFlag{Name: "concurrency", Usage: "boots in flight at once", Value: 1},
			&cli.StringFlag{Name: "data", Usage: "event JSON", Value: "{}"},
			&cli.StringFlag{Name: "baselines", Usage: "comma list of local baselines to measure in the same run (direct, bwrap, runc) or none", Value: "direct,bwrap,runc"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.BoolFlag{Name: "drop-caches", Usage: "empty the whole page cache (the runtime's files too) before each boot"},
			&cli.BoolFlag{Name: "warm-image", Usage: "--boot cold: keep the image in the page cache (default: evict it and destroy idle instances before each boot)"},
			&cli.BoolFlag{Name: "no-prefetch", Usage: "cold boot: do not prefetch the recorded working set"},
			&cli.StringFlag{Name: "pss", Usage: "comma list of live-instance counts at which to report PSS per instance (e.g. 1,10,50)"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			var pss []int
			for _, s := range bench.SplitList(cmd.String("pss")) {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 {
					return fmt.Errorf("--pss %q: want a comma list of positive counts", cmd.String("pss"))
				}
				pss = append(pss, n)
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			r, err := bench.Run(ctx, bench.Options{
				DropCaches:  cmd.Bool("drop-caches"),
				ColdImage:   cmd.String("boot") == "cold" && !cmd.Bool("warm-image"),
				NoPrefetch:  cmd.Bool("no-prefetch"),
				PSSAt:       pss,
				Client:      c,
				Function:    cmd.String("function"),
				Boot:        cmd.String("boot"),
				N:           int(cmd.Int("n")),
				Concurrency: int(cmd.Int("concurrency")),
				Event:       []byte(cmd.String("data")),
				Baselines:   bench.SplitList(cmd.String("baselines")),
			})
			if err != nil {
				return err
			}
			if cmd.Bool("json") {
				return r.WriteJSON(os.Stdout)
			}
			r.WriteText(os.Stdout)
			return nil
		},
	}
}
