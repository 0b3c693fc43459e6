package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/gateway"
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
	serve := func(n *node.Node, timeout time.Duration) *gatewayClient {
		g, err := gateway.New(n, gateway.Config{Registry: prometheus.NewRegistry(), RatePerSecond: 1e6, RateBurst: 1e6, RequestTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(g)
		t.Cleanup(ts.Close)
		return &gatewayClient{base: ts.URL, client: &http.Client{Timeout: 20 * time.Second}}
	}
	lone := start(nil)
	seed := start(nil)
	member := start([]string{seed.Addr().String()})
	if err := member.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	target := "/v1/immutable/" + strings.Repeat("7e", 20)

	tests := []struct {
		name string
		c    *gatewayClient
		want error
	}{
		{"not found", serve(member, 0), node.ErrNotFound},
		{"no nodes", serve(lone, 0), node.ErrNoNodes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.do(ctx, http.MethodGet, target, nil, nil)
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

// TestGatewayStatusErrorUnwrap: every reason the gateway sends maps back
// to its error; an answer without one (the gateway's own refusals) matches
// none.
func TestGatewayStatusErrorUnwrap(t *testing.T) {
	tests := []struct {
		body string
		want error
	}{
		{`{"error":"get x: not found","status":404,"reason":"not_found"}`, node.ErrNotFound},
		{`{"error":"x","status":502,"reason":"no_nodes"}`, node.ErrNoNodes},
		{`{"error":"x","status":502,"reason":"no_answer"}`, node.ErrNoAnswer},
		{`{"error":"x","status":502,"reason":"refused"}`, node.ErrRefused},
		{`{"error":"x","status":409,"reason":"refused"}`, node.ErrRefused},
		{`{"error":"x","status":504,"reason":"timeout"}`, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		err := error(statusError(502, []byte(tc.body)))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v does not match %v", tc.body, err, tc.want)
		}
	}
	err := error(statusError(400, []byte(`{"error":"target: not hex","status":400}`)))
	for _, s := range []error{node.ErrNotFound, node.ErrNoNodes, node.ErrNoAnswer, node.ErrRefused, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			t.Errorf("a 400 without a reason matches %v", s)
		}
	}
	if !strings.Contains(err.Error(), "target: not hex") {
		t.Errorf("message %q lost the gateway's error", err)
	}
}
