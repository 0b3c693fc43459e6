package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

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
			&cli.BoolFlag{Name: "limit-loopback", Usage: "apply every per-IP and per-subnet defence (rate limit, routing-table address limits, lookup subnet caps, BEP 42 checks, storage quotas) to loopback addresses too, which are exempt by default; for testing the defences on one machine", EnvVars: []string{"DHTD_LIMIT_LOOPBACK"}},
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
			&cli.StringFlag{Name: "on-corrupt", Value: "salvage", Usage: "when the database in --data-dir is damaged, or lost from a directory that held one: salvage (move a damaged file aside as dhtd.db.corrupt-<time>, log one ERROR line, start with what can be recovered) or fail (exit 1 with one line, touching nothing)", EnvVars: []string{"DHTD_ON_CORRUPT"}},
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
	hup := make(chan os.Signal, 1) // SIGHUP reloads; it never ends the process
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	dlog, err := newDaemonLog(c)
	if err != nil {
		return err
	}
	if dlog.file != nil {
		defer dlog.file.Close()
	}
	logger := dlog.Logger
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
			return usageErrorf(cmdName(c), "--listen %q: %w", l, err)
		}
		f := familyOf(l)
		if families[f] {
			return usageErrorf(cmdName(c), "--listen %q: a second %s address; give at most one per family", l, f)
		}
		families[f] = true
	}
	mode, err := routing.ParseBEP42Mode(c.String("bep42"))
	if err != nil {
		return usageErrorf(cmdName(c), "--bep42 %q: want off, prefer or enforce", c.String("bep42"))
	}
	cfg.BEP42 = mode
	switch r := c.Float64("rate-limit"); {
	case r < 0:
		return usageErrorf(cmdName(c), "--rate-limit %v: must not be negative", r)
	case r == 0:
		cfg.RateLimit.Rate = -1
	default:
		cfg.RateLimit.Rate, cfg.RateLimit.Burst = r, 5*r
	}
	cfg.LimitLoopback = c.Bool("limit-loopback")
	switch b := c.Int("reply-budget"); {
	case b < 0:
		return usageErrorf(cmdName(c), "--reply-budget %d: must not be negative", b)
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
		return usageErrorf(cmdName(c), "--storage %q: want disk or memory", st)
	}
	switch oc := c.String("on-corrupt"); oc {
	case "salvage":
	case "fail":
		cfg.FailOnCorrupt = true
	default:
		return fmt.Errorf("--on-corrupt %q: want salvage or fail", oc)
	}
	cfg.SaveInterval = c.Duration("save-interval")
	if cfg.SaveInterval <= 0 {
		return usageErrorf(cmdName(c), "--save-interval %s: must be positive", cfg.SaveInterval)
	}
	if s := c.String("id"); s != "" {
		id, err := krpc.ParseID(s)
		if err != nil {
			return usageErrorf(cmdName(c), "--id: %w", err)
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
	if err := checkBootstrapSyntax(cmdName(c), cfg.Bootstrap); err != nil {
		return err
	}
	if c.IsSet("bootstrap") {
		// A name given on purpose that does not exist is a mistake; a
		// DNS server that cannot be reached yet is not.
		if notFound, err := resolveBootstrap(ctx, cfg.Bootstrap); err != nil && notFound {
			return err
		}
	}
	var keepKeys []ed25519.PublicKey
	if path := c.String("pkarr-keep"); path != "" {
		if keepKeys, err = readPkarrKeep(path); err != nil {
			return err
		}
	}
	stack, err := node.NewStack(cfg, listens...)
	if err != nil {
		return err
	}
	nodes := stack.Nodes()
	n := stack.Primary() // the node of /debug/routing, pkarr-keep and the metrics registry
	if cfg.DataDir == "" {
		logger.Info("storage in memory: the id, table, peers and items are lost on exit")
	}
	var srv *http.Server
	if addr := c.String("metrics-listen"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			_ = stack.Close()
			return fmt.Errorf("--metrics-listen %q: %w", addr, err)
		}
		debug := map[string]http.Handler{"/debug/routing": n.Admin().RoutingHandler()}
		for _, o := range nodes[1:] {
			debug["/debug/routing/"+familyOf(o.Addr().String())] = o.Admin().RoutingHandler()
		}
		ready := func() bool { // once any family is, while every storage works
			ok := false
			for _, o := range nodes {
				st := o.Stats()
				if !st.StorageHealthy {
					return false
				}
				ok = ok || st.Ready
			}
			return ok
		}
		h, err := guardMetricsListener(metrics.Handler(n.Admin().Registry(), ready, debug), guard, n.Admin().Registry())
		if err != nil {
			ln.Close()
			_ = stack.Close()
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
	stopGateway, err := startGateway(c, stack, logger, policy)
	if err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		_ = stack.Close()
		return err
	}

	var keep *node.Republisher
	if len(keepKeys) > 0 {
		if keep, err = startPkarrKeep(n); err != nil {
			stopGateway()
			if srv != nil {
				_ = srv.Close()
			}
			_ = stack.Close()
			return err
		}
	}
	// Everything is started: the heap's startup garbage goes back to the
	// system.
	debug.FreeOSMemory()
	d := &daemon{c: c, log: dlog, nodes: nodes, rate: c.Float64("rate-limit"), budget: c.Int("reply-budget")}
	for _, o := range nodes {
		b := newBooter(o, logger)
		if o == n && keep != nil {
			b.afterFirst = func() { watchPkarrKeys(keep, keepKeys, logger) }
		}
		d.booters = append(d.booters, b)
		b.start(ctx)
	}
	d.wait(ctx, hup)
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
	if err := stack.Close(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped", "data_dir", n.Admin().DataDir())
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
func familyOf(listen string) string { return node.ListenFamily(listen) }

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
