package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/routing"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run a DHT node until interrupted",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Usage: "UDP address to listen on, repeatable: one node per address family (BEP 32) (default: 0.0.0.0:6881, and [::]:6881 where the host has IPv6)", EnvVars: []string{"DHTD_LISTEN"}},
			&cli.StringFlag{Name: "bep42", Value: "off", Usage: "BEP 42 node id checks: off, prefer (nodes whose id matches their address win table slots and are chosen as lookup results and storage targets) or enforce (other nodes are refused)", EnvVars: []string{"DHTD_BEP42"}},
			&cli.Float64Flag{Name: "rate-limit", Value: 20, Usage: "packets per second one source IP may send (burst 5x); 0 disables", EnvVars: []string{"DHTD_RATE_LIMIT"}},
			&cli.IntFlag{Name: "reply-budget", Value: 1 << 20, Usage: "bytes per second of replies, all sources together; 0 disables", EnvVars: []string{"DHTD_REPLY_BUDGET"}},
			&cli.StringSliceFlag{Name: "bootstrap", Usage: "bootstrap node host:port (repeatable); default: the public routers", EnvVars: []string{"DHTD_BOOTSTRAP"}},
			&cli.BoolFlag{Name: "no-bootstrap", Usage: "do not contact any bootstrap node", EnvVars: []string{"DHTD_NO_BOOTSTRAP"}},
			&cli.StringFlag{Name: "id", Usage: "node id as 40 hex characters (default: random)", EnvVars: []string{"DHTD_ID"}},
			&cli.StringFlag{Name: "metrics-listen", Value: "127.0.0.1:9181", Usage: "HTTP address for /metrics, /healthz, /readyz and /debug/routing; empty disables", EnvVars: []string{"DHTD_METRICS_LISTEN"}},
			&cli.BoolFlag{Name: "read-only", Usage: "BEP 43 read-only node: send ro=1, answer no queries", EnvVars: []string{"DHTD_READ_ONLY"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"DHTD_LOG_LEVEL"}},
			httpFlag(),
			httpAllowedHostsFlag(),
			httpAllowedOriginsFlag(),
			pkarrKeepFlag(),
			&cli.StringFlag{Name: "data-dir", Usage: "directory for the node id, routing table, peers and items (default: $XDG_STATE_HOME/dhtd, else ~/.local/state/dhtd)", EnvVars: []string{"DHTD_DATA_DIR"}},
			&cli.StringFlag{Name: "storage", Value: "disk", Usage: "disk (keep state in --data-dir) or memory (lose it on exit)", EnvVars: []string{"DHTD_STORAGE"}},
			&cli.DurationFlag{Name: "save-interval", Value: 5 * time.Minute, Usage: "how often the routing table is saved and expired records are deleted from disk", EnvVars: []string{"DHTD_SAVE_INTERVAL"}},
		}, gcFlags()...),
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
	if err := applyGCFlags(c); err != nil {
		return err
	}
	cfg := node.Config{Logger: logger, ReadOnly: c.Bool("read-only")}
	listens := c.StringSlice("listen")
	if len(listens) == 0 {
		listens = defaultListen()
	}
	families := make(map[string]bool)
	for _, l := range listens {
		if _, err := net.ResolveUDPAddr("udp", l); err != nil {
			return fmt.Errorf("--listen %q: %w", l, err)
		}
		f := familyOf(l)
		if families[f] {
			return fmt.Errorf("--listen %q: a second %s address; give at most one per family", l, f)
		}
		families[f] = true
	}
	mode, err := routing.ParseBEP42Mode(c.String("bep42"))
	if err != nil {
		return fmt.Errorf("--bep42 %q: want off, prefer or enforce", c.String("bep42"))
	}
	cfg.BEP42 = mode
	switch r := c.Float64("rate-limit"); {
	case r < 0:
		return fmt.Errorf("--rate-limit %v: must not be negative", r)
	case r == 0:
		cfg.RateLimit.Rate = -1
	default:
		cfg.RateLimit.Rate, cfg.RateLimit.Burst = r, 5*r
	}
	switch b := c.Int("reply-budget"); {
	case b < 0:
		return fmt.Errorf("--reply-budget %d: must not be negative", b)
	case b == 0:
		cfg.ReplyBytesPerSecond = -1
	default:
		cfg.ReplyBytesPerSecond = b
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
	policy, guard, err := httpPolicy(c)
	if err != nil {
		return err
	}
	switch {
	case c.Bool("no-bootstrap"):
	case len(c.StringSlice("bootstrap")) > 0:
		cfg.Bootstrap = c.StringSlice("bootstrap")
	default:
		cfg.Bootstrap = defaultRouters
	}
	var keepKeys []ed25519.PublicKey
	if path := c.String("pkarr-keep"); path != "" {
		if keepKeys, err = readPkarrKeep(path); err != nil {
			return err
		}
	}
	nodes, err := startNodes(cfg, listens)
	if err != nil {
		return err
	}
	n := nodes[0] // the node the gateway and /debug/routing serve
	if cfg.DataDir == "" {
		logger.Info("storage in memory: the id, table, peers and items are lost on exit")
	}
	var srv *http.Server
	if addr := c.String("metrics-listen"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeNodes(nodes)
			return fmt.Errorf("--metrics-listen %q: %w", addr, err)
		}
		debug := map[string]http.Handler{"/debug/routing": n.RoutingHandler()}
		for _, o := range nodes[1:] {
			debug["/debug/routing/"+familyOf(o.Addr().String())] = o.RoutingHandler()
		}
		ready := func() bool { // ready once any family is
			for _, o := range nodes {
				if o.Ready() {
					return true
				}
			}
			return false
		}
		h, err := guardMetricsListener(metrics.Handler(n.Registry(), ready, debug), guard, n.Registry())
		if err != nil {
			ln.Close()
			closeNodes(nodes)
			return err
		}
		srv = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
		}
		go func() { _ = srv.Serve(ln) }()
		logger.Info("metrics listening", "addr", ln.Addr().String())
	}
	stopGateway, err := startGateway(c, n, logger, policy)
	if err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		closeNodes(nodes)
		return err
	}

	var keep *node.Republisher
	if len(keepKeys) > 0 {
		if keep, err = startPkarrKeep(n); err != nil {
			stopGateway()
			if srv != nil {
				_ = srv.Close()
			}
			closeNodes(nodes)
			return err
		}
	}
	// Everything is started: the code and data touched only on the way
	// here need not stay resident.
	debug.FreeOSMemory()
	if n, err := releaseStartupPages(); err != nil {
		logger.Debug("startup pages kept", "err", err)
	} else {
		logger.Debug("startup pages released", "bytes", n)
	}
	for _, o := range nodes {
		go func() {
			if len(cfg.Bootstrap) > 0 {
				if err := o.Bootstrap(ctx); err != nil && !errors.Is(err, context.Canceled) {
					logger.Warn("bootstrap failed; the node keeps trying", "addr", o.Addr(), "err", err)
				}
			}
			if o == n && keep != nil {
				watchPkarrKeys(keep, keepKeys, logger)
			}
		}()
	}
	<-ctx.Done()
	stop() // a second signal now ends the process at once
	logger.Info("shutting down")
	stopGateway() // before the node closes: no request may reach a closed node
	if keep != nil {
		keep.Close()
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	// Close waits for the acknowledged writes, saves the routing table and
	// closes the socket and the database.
	if err := closeNodes(nodes); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped", "data_dir", n.DataDir())
	return nil
}

// defaultListen is the --listen default: 0.0.0.0:6881, and [::]:6881 where
// the host can bind IPv6 (BEP 32).
func defaultListen() []string {
	out := []string{"0.0.0.0:6881"}
	if pc, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		pc.Close()
		out = append(out, "[::]:6881")
	}
	return out
}

// familyOf is "ipv4" or "ipv6" for a listen address (a host name counts as
// IPv4).
func familyOf(listen string) string {
	if ap, err := netip.ParseAddrPort(listen); err == nil && ap.Addr().Is6() && !ap.Addr().Is4In6() {
		return "ipv6"
	}
	return "ipv4"
}

// startNodes starts one node per listen address, from cfg: with more than
// one (BEP 32 dual stack) they share one metrics registry, each series
// labelled with its family, and are linked so that each answers "want"
// for the other's family. The first keeps --data-dir and --id; the others
// keep their state in a subdirectory named after their family and choose
// their own id.
func startNodes(cfg node.Config, listens []string) ([]*node.Node, error) {
	var nodes []*node.Node
	if len(listens) > 1 {
		cfg.Registry = prometheus.NewRegistry()
	}
	for i, l := range listens {
		c := cfg
		c.Listen = l
		if len(listens) > 1 {
			c.Metrics = metrics.Options{Family: familyOf(l), NoRuntime: i > 0}
		}
		if i > 0 {
			c.ID = krpc.ID{}
			if c.DataDir != "" {
				c.DataDir = filepath.Join(cfg.DataDir, familyOf(l))
			}
		}
		n, err := node.New(c)
		if err != nil {
			closeNodes(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 2 {
		node.Link(nodes[0], nodes[1])
	}
	return nodes, nil
}

// closeNodes closes every node and returns the first error.
func closeNodes(nodes []*node.Node) error {
	var first error
	for _, n := range nodes {
		if err := n.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
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
