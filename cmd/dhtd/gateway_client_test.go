package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// TestGatewayClientSentinels: a failure answered by a real gateway reaches
// the CLI's gateway client as an error errors.Is matches with node's
// sentinel, as the same failure of a local node would.
func TestGatewayClientSentinels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func(boot []string) *node.Node {
		cfg := node.LoopbackConfig()
		cfg.Bootstrap = boot
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	serve := func(n *node.Node, timeout time.Duration) *gateway.Client {
		g, err := gateway.New(n, gateway.Config{Registry: prometheus.NewRegistry(), RatePerSecond: 1e6, RateBurst: 1e6, RequestTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(g)
		t.Cleanup(ts.Close)
		return gateway.NewClient(ts.URL, &http.Client{Timeout: 20 * time.Second})
	}
	lone := start(nil)
	seed := start(nil)
	member := start([]string{seed.Addr().String()})
	if err := member.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	var target krpc.ID
	for i := range target {
		target[i] = 0x7e
	}

	tests := []struct {
		name string
		c    *gateway.Client
		want error
	}{
		{"not found", serve(member, 0), node.ErrNotFound},
		{"no nodes", serve(lone, 0), node.ErrNoNodes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.GetImmutable(ctx, target)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want it to match %v", err, tc.want)
			}
			for _, other := range []error{node.ErrNotFound, node.ErrNoNodes, node.ErrNoAnswer, node.ErrRefused} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err %v also matches %v", err, other)
				}
			}
		})
	}
}
