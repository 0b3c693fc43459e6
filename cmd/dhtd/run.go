package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run a DHT node until interrupted",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "0.0.0.0:6881", Usage: "UDP address to listen on", EnvVars: []string{"DHTD_LISTEN"}},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "bootstrap node host:port (repeatable); default: the public routers", EnvVars: []string{"DHTD_BOOTSTRAP"}},
			&cli.BoolFlag{Name: "no-bootstrap", Usage: "do not contact any bootstrap node", EnvVars: []string{"DHTD_NO_BOOTSTRAP"}},
			&cli.StringFlag{Name: "id", Usage: "node id as 40 hex characters (default: random)", EnvVars: []string{"DHTD_ID"}},
			&cli.StringFlag{Name: "metrics-listen", Value: "127.0.0.1:9181", Usage: "HTTP address for /metrics, /healthz, /readyz and /debug/routing; empty disables", EnvVars: []string{"DHTD_METRICS_LISTEN"}},
			&cli.BoolFlag{Name: "read-only", Usage: "BEP 43 read-only node: send ro=1, answer no queries", EnvVars: []string{"DHTD_READ_ONLY"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"DHTD_LOG_LEVEL"}},
		},
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	// Catch SIGINT and SIGTERM before anything is started or logged, so a
	// signal that arrives during startup still ends in a clean shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("--log-level %q: %w", c.String("log-level"), err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := node.Config{Listen: c.String("listen"), Logger: logger, ReadOnly: c.Bool("read-only")}
	if _, err := net.ResolveUDPAddr("udp", cfg.Listen); err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	if s := c.String("id"); s != "" {
		id, err := krpc.ParseID(s)
		if err != nil {
			return fmt.Errorf("--id: %w", err)
		}
		cfg.ID = id
	}
	switch {
	case c.Bool("no-bootstrap"):
	case len(c.StringSlice("bootstrap")) > 0:
		cfg.Bootstrap = c.StringSlice("bootstrap")
	default:
		cfg.Bootstrap = defaultRouters
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	var srv *http.Server
	if addr := c.String("metrics-listen"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			n.Close()
			return fmt.Errorf("--metrics-listen %q: %w", addr, err)
		}
		srv = &http.Server{
			Handler: metrics.Handler(n.Registry(), n.Ready, map[string]http.Handler{
				"/debug/routing": n.RoutingHandler(),
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go func() { _ = srv.Serve(ln) }()
		logger.Info("metrics listening", "addr", ln.Addr().String())
	}

	go func() {
		if len(cfg.Bootstrap) == 0 {
			return
		}
		if err := n.Bootstrap(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Warn("bootstrap failed; the node keeps trying", "err", err)
		}
	}()
	<-ctx.Done()
	stop() // a second signal now ends the process at once
	logger.Info("shutting down")
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	return n.Close()
}
