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

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/node/gateway"
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

// startGateway serves the gateway of n on --http, if given. stop ends it
// (in-flight lookups are cancelled, then the server shuts down, bounded by
// gatewayShutdownTimeout); call it before closing the node.
func startGateway(c *cli.Context, n *node.Node, logger *slog.Logger) (stop func(), err error) {
	addr := c.String("http")
	if addr == "" {
		return func() {}, nil
	}
	g, err := gateway.New(n, gateway.Config{Logger: logger.With("component", "gateway")})
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
