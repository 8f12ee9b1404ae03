// Command catalyzer is the CLI of the catalyzer serverless sandbox
// runtime: the daemon (serve), its client (fn), one-shot runs (run) and
// the benchmark (bench). Each verb lives in a file of its own; the work
// is done by the internal packages.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// defaultAddr is where the daemon listens and the client connects.
const defaultAddr = "127.0.0.1:8470"

func main() {
	// The sandbox's init helper is this binary re-executed: it must take
	// over before anything else runs.
	sandbox.MaybeInit()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &cli.Command{
		Name:  "catalyzer",
		Usage: "boot isolated serverless function instances in microseconds",
		Commands: []*cli.Command{
			serveCommand(),
			fnCommand(),
			runCommand(),
			benchCommand(),
			checkpointCommand(),
			restoreCommand(),
		},
	}
	if err := app.Run(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "catalyzer:", err)
		os.Exit(1)
	}
}

// addrFlag is the daemon address flag shared by the client verbs.
func addrFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "addr",
		Usage:   "daemon address (host:port)",
		Value:   defaultAddr,
		Sources: cli.EnvVars("CATALYZER_ADDR"),
	}
}
