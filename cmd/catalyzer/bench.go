package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "boot N fresh instances of a deployed function and report latency percentiles, phases and baselines",
		Flags: clientFlags(
			&cli.StringFlag{Name: "function", Usage: "deployed function to boot", Required: true},
			&cli.StringFlag{Name: "boot", Usage: "scratch, fork, cold or warm, or a comma list of them (each measured in turn, against the same baselines)", Value: "scratch"},
			&cli.IntFlag{Name: "n", Aliases: []string{"N"}, Usage: "number of boots (per mode and concurrency level)", Value: 50},
			&cli.StringFlag{Name: "concurrency", Usage: "boots in flight at once, or a comma list of levels to sweep (1,2,4,8): throughput and p50/p99 per level", Value: "1"},
			&cli.StringFlag{Name: "data", Usage: "event JSON", Value: "{}"},
			&cli.StringFlag{Name: "baselines", Usage: "comma list of local baselines to measure in the same run (direct, bwrap, runc, zygote) or none", Value: "direct,bwrap,runc,zygote"},
			&cli.BoolFlag{Name: "first-invocation", Usage: "also time the handler on a scratch instance's first and second invocation, next to the first invocation after each mode's boot"},
			&cli.StringFlag{Name: "plot", Usage: "write an SVG to `FILE`: latency CDF per mode and baseline, phase bars, the concurrency sweep"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (an array of them for several modes)"},
			&cli.BoolFlag{Name: "drop-caches", Usage: "empty the whole page cache (the runtime's files too) before each boot"},
			&cli.BoolFlag{Name: "warm-image", Usage: "--boot cold: keep the image in the page cache (default: evict it and destroy idle instances before each boot)"},
			&cli.BoolFlag{Name: "no-prefetch", Usage: "cold boot: do not read the image ahead (the pages the plan reads then come from disk as it reads them)"},
			&cli.StringFlag{Name: "pss", Usage: "comma list of live-instance counts at which to report PSS per instance (e.g. 1,10,50)"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			pss, err := positiveList("--pss", cmd.String("pss"))
			if err != nil {
				return err
			}
			levels, err := positiveList("--concurrency", cmd.String("concurrency"))
			if err != nil {
				return err
			}
			modes := bench.SplitList(cmd.String("boot"))
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			rs, err := bench.RunModes(ctx, bench.Options{
				DropCaches:      cmd.Bool("drop-caches"),
				ColdImage:       !cmd.Bool("warm-image"),
				NoPrefetch:      cmd.Bool("no-prefetch"),
				PSSAt:           pss,
				Client:          c,
				Function:        cmd.String("function"),
				N:               int(cmd.Int("n")),
				Concurrency:     levels,
				Event:           []byte(cmd.String("data")),
				Baselines:       bench.SplitList(cmd.String("baselines")),
				FirstInvocation: cmd.Bool("first-invocation"),
			}, modes)
			if err != nil {
				return err
			}
			if path := cmd.String("plot"); path != "" {
				if err := writePlot(path, rs); err != nil {
					return err
				}
			}
			if cmd.Bool("json") {
				if len(rs) == 1 {
					return rs[0].WriteJSON(os.Stdout)
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rs)
			}
			for i, r := range rs {
				if i > 0 {
					fmt.Println()
				}
				r.WriteText(os.Stdout)
			}
			return nil
		},
	}
}

// positiveList parses flag's comma list of positive integers.
func positiveList(flag, s string) ([]int, error) {
	var out []int
	for _, f := range bench.SplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want a comma list of positive counts", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// writePlot has catalyzer-plot (next to this binary, or on PATH) draw
// the run's SVG into path: gonum/plot stays out of this binary, which is
// re-executed on the boot path (see cmd/catalyzer-plot).
func writePlot(path string, rs []bench.Report) error {
	plotter := ""
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), "catalyzer-plot"); unix.Access(p, unix.X_OK) == nil {
			plotter = p
		}
	}
	if plotter == "" {
		p, err := exec.LookPath("catalyzer-plot")
		if err != nil {
			return fmt.Errorf("--plot: catalyzer-plot is neither next to this binary nor on PATH (make build makes bin/catalyzer-plot)")
		}
		plotter = p
	}
	b, err := json.Marshal(rs)
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	cmd := exec.Command(plotter, "-o", path)
	cmd.Stdin = bytes.NewReader(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("--plot: %s: %v: %s", plotter, err, bytes.TrimSpace(out))
	}
	return nil
}
