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
	"path/filepath"
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
			httpFlag(),
			&cli.StringFlag{Name: "data-dir", Usage: "directory for the node id, routing table, peers and items (default: $XDG_STATE_HOME/dhtd, else ~/.local/state/dhtd)", EnvVars: []string{"DHTD_DATA_DIR"}},
			&cli.StringFlag{Name: "storage", Value: "disk", Usage: "disk (keep state in --data-dir) or memory (lose it on exit)", EnvVars: []string{"DHTD_STORAGE"}},
			&cli.DurationFlag{Name: "save-interval", Value: 5 * time.Minute, Usage: "how often the routing table is saved and expired records are deleted from disk", EnvVars: []string{"DHTD_SAVE_INTERVAL"}},
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
	switch st := c.String("storage"); st {
	case "disk":
		dir := c.String("data-dir")
		if dir == "" {
			var err error
			if dir, err = defaultDataDir(); err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
		}
		cfg.DataDir = dir
	case "memory":
	default:
		return fmt.Errorf("--storage %q: want disk or memory", st)
	}
	cfg.SaveInterval = c.Duration("save-interval")
	if cfg.SaveInterval <= 0 {
		return fmt.Errorf("--save-interval %s: must be positive", cfg.SaveInterval)
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
	if cfg.DataDir == "" {
		logger.Info("storage in memory: the id, table, peers and items are lost on exit")
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
	stopGateway, err := startGateway(c, n, logger)
	if err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		n.Close()
		return err
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
	stopGateway() // before the node closes: no request may reach a closed node
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	// Close waits for the acknowledged writes, saves the routing table and
	// closes the socket and the database.
	if err := n.Close(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped", "data_dir", n.DataDir())
	return nil
}

// defaultDataDir is the data directory used without --data-dir: the XDG
// state directory, $XDG_STATE_HOME/dhtd (an absolute path, per the XDG base
// directory specification), else ~/.local/state/dhtd.
func defaultDataDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "dhtd"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no default (%w); set --data-dir or DHTD_DATA_DIR", err)
	}
	return filepath.Join(home, ".local", "state", "dhtd"), nil
}
