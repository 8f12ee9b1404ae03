package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/oci"
)

// The OCI runtime: runc's command line, reached as bin/catalyzer-runc (a
// link to this binary: main dispatches on the name) or as `catalyzer oci
// ...`. Each verb group is a file of its own (oci_*.go); the work is done
// by package oci.

// ociVersion is what --version prints, in runc's shape.
const ociVersion = "0.1.0"

// ociRunNames are the program names that make this binary the OCI runtime.
var ociRunNames = map[string]bool{"catalyzer-runc": true, "runc": true}

const defaultOCIRoot = "/run/catalyzer-runc"

// ociFlags are runc's global flags, as containerd's shim passes them.
func ociFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "root", Usage: "state root: one directory per container", Value: defaultOCIRoot},
		&cli.StringFlag{Name: "log", Usage: "append errors (and debug lines) to this file"},
		&cli.StringFlag{Name: "log-format", Usage: "text or json", Value: "text"},
		&cli.BoolFlag{Name: "systemd-cgroup", Usage: "use systemd's cgroup driver (refused: not supported)"},
		&cli.BoolFlag{Name: "debug", Usage: "accepted for runc compatibility"},
		&cli.StringFlag{Name: "criu", Usage: "accepted for runc compatibility (checkpoints use catalyzer's own image engine)"},
		&cli.BoolFlag{Name: "rootless", Usage: "accepted for runc compatibility: auto and false work, true is refused"},
		&cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version"},
	}
}

func ociSubcommands() []*cli.Command {
	return []*cli.Command{
		ociCreateCommand(), ociStartCommand(), ociRunCommand(),
		ociStateCommand(), ociListCommand(), ociPsCommand(),
		ociKillCommand(), ociDeleteCommand(),
		ociExecCommand(),
		ociPauseCommand(), ociResumeCommand(), ociUpdateCommand(), ociEventsCommand(),
		ociCheckpointCommand(), ociRestoreCommand(),
		ociFeaturesCommand(),
	}
}

// ociApp is the runtime as catalyzer-runc: runc's verbs at the top.
func ociApp() *cli.Command {
	return &cli.Command{
		Name:     "catalyzer-runc",
		Usage:    "an OCI runtime (runc-compatible) on catalyzer's sandbox, with init-less boot by annotation",
		Flags:    ociFlags(),
		Before:   ociBefore,
		Action:   ociVersionAction,
		Commands: ociSubcommands(),
	}
}

// ociCommand is the same runtime as `catalyzer oci ...`.
func ociCommand() *cli.Command {
	c := ociApp()
	c.Name = "oci"
	return c
}

func ociVersionAction(_ context.Context, cmd *cli.Command) error {
	if cmd.Bool("version") {
		fmt.Printf("catalyzer-runc version %s\nspec: %s\n", ociVersion, specs.Version)
		return nil
	}
	return cli.ShowSubcommandHelp(cmd)
}

func ociBefore(ctx context.Context, cmd *cli.Command) (context.Context, error) {
	if cmd.Bool("systemd-cgroup") {
		return ctx, errors.New("--systemd-cgroup: the systemd cgroup driver is not supported; configure containerd with SystemdCgroup = false")
	}
	if f := cmd.String("log-format"); f != "text" && f != "json" {
		return ctx, fmt.Errorf("--log-format %q: want text or json", f)
	}
	return ctx, nil
}

// ociRoot is the state root the global --root names.
func ociRoot(cmd *cli.Command) oci.Root { return oci.Root{Dir: cmd.String("root")} }

// ociID is the verb's one container id argument.
func ociID(cmd *cli.Command) (string, error) {
	if cmd.Args().Len() < 1 {
		return "", errors.New("a container id is required")
	}
	id := cmd.Args().First()
	return id, oci.CheckID(id)
}

// ociLoad opens the container the verb names.
func ociLoad(cmd *cli.Command) (*oci.Container, error) {
	id, err := ociID(cmd)
	if err != nil {
		return nil, err
	}
	return ociRoot(cmd).Load(id)
}

// ociLogError appends err to --log in the chosen format; containerd's
// shim reads the last "error" line of a json log as the failure's cause.
func ociLogError(args []string, err error) {
	path, format := "", "text"
	for i := 0; i < len(args); i++ {
		a := args[i]
		for _, name := range []string{"log", "log-format"} {
			for _, p := range []string{"--" + name, "-" + name} {
				if v, ok := strings.CutPrefix(a, p+"="); ok {
					setLogArg(name, v, &path, &format)
				} else if a == p && i+1 < len(args) {
					setLogArg(name, args[i+1], &path, &format)
				}
			}
		}
	}
	if path == "" {
		return
	}
	f, ferr := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr != nil {
		return
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if format == "json" {
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": err.Error(), "time": now})
		fmt.Fprintf(f, "%s\n", b)
		return
	}
	fmt.Fprintf(f, "time=%q level=error msg=%q\n", now, err.Error())
}

func setLogArg(name, v string, path, format *string) {
	if name == "log" {
		*path = v
	} else {
		*format = v
	}
}

// runOCI runs the runtime under its runc name and exits.
func runOCI(ctx context.Context) {
	err := ociApp().Run(ctx, os.Args)
	var st exitStatus
	switch {
	case errors.As(err, &st):
		os.Exit(int(st))
	case err != nil:
		ociLogError(os.Args[1:], err)
		fmt.Fprintln(os.Stderr, filepath.Base(os.Args[0])+":", err)
		os.Exit(1)
	}
}

// parseSignal reads "KILL", "SIGKILL" or "9".
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d out of range", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
