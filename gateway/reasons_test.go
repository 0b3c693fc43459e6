package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/fakenode"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// refuser is a DHT node on 127.0.0.1 that answers lookups with a token and
// refuses every write with a KRPC 202 error.
func refuser(t *testing.T) string {
	t.Helper()
	return fakenode.Refuser(t, krpc.RandomID(), krpc.ErrCodeServer, "storage full").Addr.String()
}

// TestGatewayErrorReasons: each sentinel error of node reaches an HTTP
// client as a status and a reason, and ReasonError maps the reason back to
// the sentinel, so errors.Is works on both sides of the gateway.
func TestGatewayErrorReasons(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	id := strings.Repeat("7e", 20)
	priv, pub := testKey()

	lone, err := node.New(node.LoopbackConfig()) // knows no node
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lone.Close() })
	_, tsLone := serve(t, lone, nil)

	quiet, _ := silentNode(t, 200*time.Millisecond)
	_, tsQuiet := serve(t, quiet, nil)
	_, tsTimeout := serve(t, quiet, func(c *Config) { c.RequestTimeout = 100 * time.Millisecond })

	nodes := startNet(t, 2)
	_, tsNet := serve(t, nodes[1], nil)
	callJSON(t, "PUT", tsNet.URL+"/v1/mutable/"+pub, signed(priv, "", "one", 1, nil), http.StatusOK, nil)
	cas := int64(7)

	boot := refuser(t)
	cfg := node.LoopbackConfig()
	cfg.Bootstrap = []string{boot}
	refused, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { refused.Close() })
	if err := refused.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap from the refuser: %v", err)
	}
	_, tsRefused := serve(t, refused, nil)

	tests := []struct {
		name, method, url, body string
		status                  int
		reason                  string
		want                    error
	}{
		{"not found", "GET", tsNet.URL + "/v1/immutable/" + id, "", http.StatusNotFound, ReasonNotFound, node.ErrNotFound},
		{"not found mutable", "GET", tsNet.URL + "/v1/mutable/" + pub + "?salt=none", "", http.StatusNotFound, ReasonNotFound, node.ErrNotFound},
		{"no nodes get", "GET", tsLone.URL + "/v1/immutable/" + id, "", http.StatusBadGateway, ReasonNoNodes, node.ErrNoNodes},
		{"no nodes put", "POST", tsLone.URL + "/v1/immutable", `{"value":"x"}`, http.StatusBadGateway, ReasonNoNodes, node.ErrNoNodes},
		{"no nodes peers", "GET", tsLone.URL + "/v1/peers/" + id, "", http.StatusBadGateway, ReasonNoNodes, node.ErrNoNodes},
		{"no answer", "GET", tsQuiet.URL + "/v1/immutable/" + id, "", http.StatusBadGateway, ReasonNoAnswer, node.ErrNoAnswer},
		{"refused put", "POST", tsRefused.URL + "/v1/immutable", `{"value":"x"}`, http.StatusBadGateway, ReasonRefused, node.ErrRefused},
		{"refused announce", "POST", tsRefused.URL + "/v1/announce/" + id + "?port=6881", "", http.StatusBadGateway, ReasonRefused, node.ErrRefused},
		{"cas conflict", "PUT", tsNet.URL + "/v1/mutable/" + pub, signed(priv, "", "two", 2, &cas), http.StatusConflict, ReasonRefused, node.ErrRefused},
		{"timeout", "GET", tsTimeout.URL + "/v1/immutable/" + id, "", http.StatusGatewayTimeout, ReasonTimeout, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := call(t, tc.method, tc.url, tc.body)
			var e APIError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("answer is not JSON: %v\n%s", err, b)
			}
			if code != tc.status || e.Status != code || e.Reason != tc.reason {
				t.Fatalf("status %d reason %q, want %d %q: %s", code, e.Reason, tc.status, tc.reason, b)
			}
			if got := ReasonError(e.Reason); !errors.Is(got, tc.want) {
				t.Fatalf("ReasonError(%q) = %v, want %v", e.Reason, got, tc.want)
			}
		})
	}
	// The gateway's own refusals carry no reason.
	code, b := call(t, "GET", tsNet.URL+"/v1/immutable/nothex", "")
	var e APIError
	if err := json.Unmarshal(b, &e); err != nil || code != http.StatusBadRequest || e.Reason != "" || ReasonError(e.Reason) != nil {
		t.Fatalf("bad input: status %d reason %q (%v): %s", code, e.Reason, err, b)
	}
}
