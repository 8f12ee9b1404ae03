// Command catalyzer is the CLI of the catalyzer serverless sandbox
// runtime: the daemon (serve), its client (fn), one-shot runs (run) and
// the benchmark (bench), and an OCI runtime (oci; also reached as
// catalyzer-runc, runc's command line, for containerd). Each verb lives in a file of its own; the work
// is done by the internal packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/client"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/oci"
	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// defaultAddr is where the daemon listens and the client connects.
const defaultAddr = "127.0.0.1:8470"

// defaultStateDir is serve's state dir, where the client verbs look for
// the API token too.
const defaultStateDir = "/var/lib/catalyzer"

func main() {
	// The sandbox's init helper is this binary re-executed: it must take
	// over before anything else runs.
	sandbox.MaybeInit()
	// So is a container's init, re-executed by the OCI runtime's create.
	oci.MaybeInit()

	if ociRunNames[filepath.Base(os.Args[0])] {
		// Run as catalyzer-runc: the OCI runtime, with runc's verbs.
		// No signal handling of its own: a signal ends a verb as it
		// would end runc.
		runOCI(context.Background())
		return
	}

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
			ociCommand(),
		},
	}
	err := app.Run(ctx, os.Args)
	var st exitStatus
	switch {
	case errors.As(err, &st):
		os.Exit(int(st))
	case errors.Is(err, errdefs.ErrNotSupported):
		fmt.Fprintln(os.Stderr, "catalyzer:", err)
		os.Exit(exitRefused)
	case err != nil:
		fmt.Fprintln(os.Stderr, "catalyzer:", err)
		os.Exit(1)
	}
}

// exitRefused is the exit status of a refusal by name (an error that is
// errdefs.ErrNotSupported: checkpoint's UnsupportedError, an image from
// another kernel), so that a script can tell it from a failure: 69,
// sysexits' EX_UNAVAILABLE. A restore that waits for its process exits
// with the process's status instead, which may be any (use --detach).
const exitRefused = 69

// exitStatus is a verb's way to exit with a status of its own (a restored
// process's) once its deferred cleanup has run: main exits with it.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitCode is nil for 0, else the exitStatus to return (-1, killed by a
// signal, exits 1).
func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return exitStatus(max(code, 1))
}

// stateDirFlag is serve's state dir; the client verbs read the API token
// from it.
func stateDirFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "state-dir", Usage: usage, Value: defaultStateDir, Sources: cli.EnvVars("CATALYZER_STATE_DIR")}
}

// clientFlags are the flags shared by the client verbs: where the daemon
// is and how to find its API token.
func clientFlags(more ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{
			Name:    "addr",
			Usage:   "daemon address (host:port)",
			Value:   defaultAddr,
			Sources: cli.EnvVars("CATALYZER_ADDR"),
		},
		&cli.StringFlag{Name: "token-file", Usage: "file holding the daemon's API token (default: <state-dir>/api.token; $" + client.TokenEnv + ", when set, is used instead)"},
		stateDirFlag("the daemon's state dir, where it keeps its API token"),
	}, more...)
}

// functionFlags are what names a function's code to run: its runtime and
// its handler (fn deploy, run).
func functionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "runtime", Usage: "python, node, java or native", Required: true},
		&cli.StringFlag{Name: "handler", Usage: `"main.handler" (python, node), "pkg.Class::method" (java) or the executable's path in the code dir (native)`, Required: true},
	}
}

// newClient is a client of the daemon named by the client flags.
func newClient(cmd *cli.Command) (*client.Client, error) {
	tok, err := client.ResolveToken(cmd.String("token-file"), cmd.String("state-dir"))
	if err != nil {
		return nil, err
	}
	return client.New(cmd.String("addr"), tok), nil
}
