package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/api"
	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "run the daemon: the HTTP API over the function platform",
		Flags:  serveFlags(),
		Action: serve,
	}
}

func serveFlags() []cli.Flag {
	return []cli.Flag{
		stateDirFlag("where functions, code and the API token (api.token) are kept"),
		&cli.StringFlag{Name: "listen", Usage: "address to listen on (host:port)", Value: defaultAddr},
		&cli.DurationFlag{Name: "keep-alive", Usage: "how long an idle instance is kept for reuse (0 = default 60s, negative = never reuse)"},
		&cli.StringFlag{Name: "cgroup-parent", Usage: "parent cgroup of every instance (swept at start)", Value: "catalyzer"},
		&cli.StringFlag{Name: "rootfs", Usage: "lower layer of every instance's root (default: the embedded minimal root: the host's /usr read-only and a curated /etc, see docs/SECURITY.md)"},
		&cli.BoolFlag{Name: "favor-cgroup-moves", Usage: "on a cgroup v1 host, mount a cgroup hierarchy with favordynmods while serving: putting an instance in its cgroups costs ~0.3 ms instead of ~11 ms, every fork and exit on the host an atomic operation more", Value: true},
		&cli.BoolFlag{Name: "userns", Usage: "run scratch instances in the function's user namespace (root inside maps to the function's own unprivileged host range); --userns=false gives them host root with Docker's capabilities. Fork templates always run in one", Value: true},
		&cli.IntFlag{Name: "env-pool", Usage: "pre-built sandbox envs kept ready per fork template (size it to the fork concurrency you expect)", Value: 4},
		&cli.IntFlag{Name: "env-pool-workers", Usage: "envs each pool builds in parallel (default: a quarter of the CPUs)"},
		&cli.IntFlag{Name: "env-pool-max", Usage: "most envs a pool keeps ready when it sizes itself from the boot rate (--env-pool is the least)", Value: 64},
		&cli.BoolFlag{Name: "fixed-env-pools", Usage: "keep every pool at --env-pool and --env-pool-workers instead of sizing it from the boot rate"},
		&cli.BoolFlag{Name: "no-templates", Usage: "do not build fork templates (boot=fork then fails; auto uses scratch)"},
		&cli.StringSliceFlag{Name: "code-root", Usage: "directory under which deploys may name code by path (code_path); repeatable; none by default, so code must be uploaded"},
		&cli.BoolFlag{Name: "allow-host-network", Usage: `let functions choose network "host" (the host's network namespace: its interfaces, and this API on loopback)`},
		&cli.IntFlag{Name: "max-functions", Usage: "most functions that may be deployed (a deploy beyond answers 429)", Value: platform.DefaultMaxFunctions},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
	}
}

// serve runs the daemon until ctx ends (SIGINT, SIGTERM), then shuts it
// down: the API first, then the platform, whose leftovers fail the
// command.
func serve(ctx context.Context, cmd *cli.Command) (err error) {
	log, err := serveLogger(cmd)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("serve needs root (namespaces, mounts, cgroups); run it as root")
	}
	p, err := platform.New(platformConfig(cmd, log))
	if err != nil {
		return err
	}
	defer func() {
		// What shutdown could not remove (a mount still busy) is
		// logged by Close, path by path, and fails the command.
		if cerr := p.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	token, err := api.LoadOrCreateToken(p.StateDir())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cmd.String("listen"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api.New(p, log, token), ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving", "addr", ln.Addr().String(), "state_dir", p.StateDir(), "token_file", filepath.Join(p.StateDir(), wire.TokenFile), "functions", len(p.List()))
	return serveHTTP(ctx, srv, ln, log)
}

// serveLogger is the daemon's logger, at --log-level.
func serveLogger(cmd *cli.Command) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cmd.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// platformConfig is the platform serve's flags ask for.
func platformConfig(cmd *cli.Command, log *slog.Logger) platform.Config {
	return platform.Config{
		StateDir:            cmd.String("state-dir"),
		CgroupParent:        cmd.String("cgroup-parent"),
		KeepAlive:           cmd.Duration("keep-alive"),
		Rootfs:              cmd.String("rootfs"),
		NoUserNS:            !cmd.Bool("userns"),
		KeepCgroupMovesSlow: !cmd.Bool("favor-cgroup-moves"),
		EnvPoolSize:         int(cmd.Int("env-pool")),
		EnvPoolWorkers:      int(cmd.Int("env-pool-workers")),
		EnvPoolMax:          int(cmd.Int("env-pool-max")),
		FixedEnvPools:       cmd.Bool("fixed-env-pools"),
		NoTemplates:         cmd.Bool("no-templates"),
		CodeRoots:           cmd.StringSlice("code-root"),
		AllowHostNet:        cmd.Bool("allow-host-network"),
		MaxFunctions:        int(cmd.Int("max-functions")),
		Logger:              log,
	}
}

// serveHTTP serves srv on ln until it fails or ctx ends; then in-flight
// requests get 10 s, after which they are cut (and the platform's Close
// destroys their instances).
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at shutdown were cut", "err", err)
		srv.Close()
	}
	return nil
}
