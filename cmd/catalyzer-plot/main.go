// Command catalyzer-plot draws the JSON of a catalyzer bench run (one
// report, or an array of them) as an SVG: latency CDF per mode and
// baseline, phase bars, the concurrency sweep. catalyzer bench --plot
// runs it; it is a binary of its own so that gonum/plot, which parses
// fonts at init, stays out of bin/catalyzer (re-executed on the boot
// path).
//
//	catalyzer-plot -o FILE.svg [REPORT.json ...]   (stdin when none; FILE.png for a PNG)
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/catalyzer/catalyzer/internal/bench"
	"github.com/catalyzer/catalyzer/internal/bench/svgplot"
)

func main() {
	out := flag.String("o", "", "SVG file to write (required)")
	flag.Parse()
	if err := run(*out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "catalyzer-plot:", err)
		os.Exit(1)
	}
}

func run(out string, files []string) error {
	if out == "" {
		return fmt.Errorf("-o FILE.svg is required")
	}
	var reports []bench.Report
	read := func(name string, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rs, err := decode(b)
		if err != nil {
			return fmt.Errorf("%s: not the JSON of catalyzer bench --json: %w", name, err)
		}
		reports = append(reports, rs...)
		return nil
	}
	if len(files) == 0 {
		if err := read("stdin", os.Stdin); err != nil {
			return err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = read(name, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	format := "svg"
	if strings.HasSuffix(out, ".png") {
		format = "png"
	}
	var img bytes.Buffer
	if err := svgplot.WriteFormat(&img, reports, format); err != nil {
		return err
	}
	return os.WriteFile(out, img.Bytes(), 0o644)
}

// decode reads one report or an array of them.
func decode(b []byte) ([]bench.Report, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var rs []bench.Report
		return rs, json.Unmarshal(b, &rs)
	}
	var r bench.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return []bench.Report{r}, nil
}
