package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/catalyzer/catalyzer/internal/api"
	"github.com/catalyzer/catalyzer/internal/platform"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the daemon: the HTTP API over the function platform",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state-dir", Usage: "where functions and code are kept", Value: "/var/lib/catalyzer"},
			&cli.StringFlag{Name: "listen", Usage: "address to listen on (host:port)", Value: defaultAddr},
			&cli.DurationFlag{Name: "keep-alive", Usage: "how long an idle instance is kept for reuse (0 = default 60s, negative = never reuse)"},
			&cli.StringFlag{Name: "cgroup-parent", Usage: "parent cgroup of every instance (swept at start)", Value: "catalyzer"},
			&cli.StringFlag{Name: "rootfs", Usage: "lower layer of every instance's root (default: the host's / read-only)"},
			&cli.BoolFlag{Name: "userns", Usage: "run instances in a user namespace (root inside maps to an unprivileged range outside)"},
			&cli.IntFlag{Name: "env-pool", Usage: "pre-built sandbox envs kept ready per fork template (size it to the fork concurrency you expect)", Value: 4},
			&cli.IntFlag{Name: "env-pool-workers", Usage: "envs each pool builds in parallel (default: a quarter of the CPUs)"},
			&cli.BoolFlag{Name: "no-templates", Usage: "do not build fork templates (boot=fork then fails; auto uses scratch)"},
			&cli.IntFlag{Name: "max-functions", Usage: "most functions that may be deployed (a deploy beyond answers 429)", Value: platform.DefaultMaxFunctions},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) (err error) {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(cmd.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			if os.Geteuid() != 0 {
				return errors.New("serve needs root (namespaces, mounts, cgroups); run it as root")
			}
			p, err := platform.New(platform.Config{
				StateDir:       cmd.String("state-dir"),
				CgroupParent:   cmd.String("cgroup-parent"),
				KeepAlive:      cmd.Duration("keep-alive"),
				Rootfs:         cmd.String("rootfs"),
				UserNS:         cmd.Bool("userns"),
				EnvPoolSize:    int(cmd.Int("env-pool")),
				EnvPoolWorkers: int(cmd.Int("env-pool-workers")),
				NoTemplates:    cmd.Bool("no-templates"),
				MaxFunctions:   int(cmd.Int("max-functions")),
				Logger:         log,
			})
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
			ln, err := net.Listen("tcp", cmd.String("listen"))
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: api.New(p, log), ReadHeaderTimeout: 10 * time.Second}
			log.Info("serving", "addr", ln.Addr().String(), "state_dir", p.StateDir(), "functions", len(p.List()))
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
			srv.Shutdown(sctx)
			return nil
		},
	}
}
