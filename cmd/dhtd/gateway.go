package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/internal/httpguard"
	"github.com/dhtd/dhtd/node"
)

// gatewayShutdownTimeout bounds the gateway's shutdown on SIGTERM.
const gatewayShutdownTimeout = 3 * time.Second

// httpFlag is `run --http`: the address of the HTTP gateway and status
// page. Off unless given.
func httpFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "http",
		Usage:   "serve the JSON gateway and status page on this TCP address (e.g. 127.0.0.1:8080); default off. A non-loopback address exposes them to the network",
		EnvVars: []string{"DHTD_HTTP"},
	}
}

// httpAllowedHostsFlag is `run --http-allowed-hosts`: Host names the
// gateway and the metrics listener serve besides their own address and
// localhost.
func httpAllowedHostsFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "http-allowed-hosts",
		Usage:   "comma-separated Host names (name, or name:port) the gateway and the metrics listener serve besides their own address and localhost, e.g. behind a reverse proxy; others answer 421 (against DNS rebinding)",
		EnvVars: []string{"DHTD_HTTP_ALLOWED_HOSTS"},
	}
}

// httpAllowedOriginsFlag is `run --http-allowed-origins`: web origins whose
// pages may use the gateway and the metrics listener.
func httpAllowedOriginsFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "http-allowed-origins",
		Usage:   "comma-separated web origins (scheme://host[:port]) whose pages may send requests to the gateway and the metrics listener; requests from other sites answer 403",
		EnvVars: []string{"DHTD_HTTP_ALLOWED_ORIGINS"},
	}
}

// httpPolicy reads --http-allowed-hosts and --http-allowed-origins; an
// entry that is not a host or an origin is an error.
func httpPolicy(c *cli.Context) (httpguard.Policy, *httpguard.Guard, error) {
	p := httpguard.Policy{
		AllowedHosts:   httpguard.ParseList(c.String("http-allowed-hosts")),
		AllowedOrigins: httpguard.ParseList(c.String("http-allowed-origins")),
	}
	g, err := httpguard.New(p)
	if err != nil {
		return p, nil, fmt.Errorf("--http-allowed-hosts/--http-allowed-origins: %w", err)
	}
	return p, g, nil
}

// guardMetricsListener puts the metrics listener's handler behind g,
// counting refusals in dhtd_metrics_http_refused_total{reason} on reg.
func guardMetricsListener(h http.Handler, g *httpguard.Guard, reg *prometheus.Registry) (http.Handler, error) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dhtd", Subsystem: "metrics_http", Name: "refused_total",
		Help: "Requests to the metrics listener refused as possibly sent by a web page of another site, by reason (host 421, origin and fetch_site 403, content_type 415).",
	}, []string{"reason"})
	if err := reg.Register(refused); err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	for _, r := range httpguard.Reasons {
		refused.WithLabelValues(r)
	}
	return g.Handler(h, func(reason string) { refused.WithLabelValues(reason).Inc() }), nil
}

// startGateway serves the gateway of n on --http, if given. stop ends it
// (in-flight lookups are cancelled, then the server shuts down, bounded by
// gatewayShutdownTimeout); call it before closing the node.
func startGateway(c *cli.Context, n *node.Node, logger *slog.Logger, policy httpguard.Policy) (stop func(), err error) {
	addr := c.String("http")
	if addr == "" {
		return func() {}, nil
	}
	g, err := gateway.New(n, gateway.Config{
		Logger:       logger.With("component", "gateway"),
		AllowedHosts: policy.AllowedHosts, AllowedOrigins: policy.AllowedOrigins,
	})
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %q: %w", addr, err)
	}
	base, cancel := context.WithCancel(context.Background())
	srv := g.Server()
	srv.BaseContext = func(net.Listener) context.Context { return base }
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("gateway stopped serving", "err", err)
		}
	}()
	bound := ln.Addr().String()
	if ap, err := netip.ParseAddrPort(bound); err == nil && !ap.Addr().IsLoopback() {
		logger.Warn("gateway listens on a non-loopback address: anyone who reaches it can make this node look up, announce and publish", "addr", bound)
	}
	logger.Info("gateway listening", "addr", bound, "status_page", "http://"+bound+"/")
	return func() {
		cancel()
		ctx, cancelShutdown := context.WithTimeout(context.Background(), gatewayShutdownTimeout)
		defer cancelShutdown()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Warn("gateway shutdown", "err", err)
			_ = srv.Close()
		}
		<-done
		logger.Info("gateway stopped")
	}, nil
}
