package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// slowBody sends a put's headers and the start of its body, then one more
// byte every tick until stop is closed or the server hangs up; it returns
// the connection, from which the answer is read.
func slowBody(t *testing.T, addr string, stop <-chan struct{}) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := fmt.Sprintf("POST /v1/immutable HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 4000\r\nX-Slow: 1\r\n\r\n{\"value\":\"", addr)
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond) // the attacker's pace, not a synchronisation
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	return c
}

// TestGatewaySlowBodies: eight clients that send a put's headers and then
// dribble its body, as many as there are lookup slots, from one address,
// do not keep a legitimate put out; each is cut off by the body deadline
// with 408.
func TestGatewaySlowBodies(t *testing.T) {
	const slow = DefaultMaxLookups
	const bodyTimeout = 4 * time.Second
	nodes := startNet(t, 3)
	g, err := New(nodes[0], Config{Registry: prometheus.NewRegistry(), RatePerSecond: 1e9, RateBurst: 1e9, BodyTimeout: bodyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, slow)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Slow") != "" {
			entered <- struct{}{}
		}
		g.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	stop := make(chan struct{})
	defer close(stop)
	start := time.Now()
	conns := make([]net.Conn, slow)
	for i := range conns {
		conns[i] = slowBody(t, addr, stop)
	}
	timeout := time.After(testWait)
	for i := 0; i < slow; i++ {
		select {
		case <-entered:
		case <-timeout:
			t.Fatalf("%d of %d slow requests reached the gateway", i, slow)
		}
	}
	// each slow request holds what the gateway gives a request at this
	// stage: a lookup slot (before the fix) or a body reader. There is no
	// event for that, so poll, bounded.
	held := func() int { return len(g.slots) + int(g.bodiesReading.Load()) }
	for held() < slow {
		select {
		case <-timeout:
			t.Fatalf("slow requests hold %d slots or body readers, want %d", held(), slow)
		case <-time.After(5 * time.Millisecond):
		}
	}

	code, b := call(t, "POST", ts.URL+"/v1/immutable", `{"value":"legitimate"}`)
	if code != http.StatusOK {
		t.Fatalf("legitimate put beside %d slow bodies: status %d, want 200: %s", slow, code, b)
	}
	if g.bodiesReading.Load() != slow {
		t.Fatalf("the slow bodies ended before the legitimate put did (%d still reading): the test proves nothing; raise bodyTimeout", g.bodiesReading.Load())
	}
	t.Logf("legitimate put answered 200 after %v beside %d slow bodies", time.Since(start).Round(time.Millisecond), slow)

	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(testWait))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("slow body %d: no answer: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow body %d: status %d, want 408", i, resp.StatusCode)
		}
	}
	el := time.Since(start)
	if el > bodyTimeout+5*time.Second {
		t.Fatalf("slow bodies cut off after %v, body timeout %v", el, bodyTimeout)
	}
	if n := g.bodiesReading.Load(); n != 0 {
		t.Fatalf("%d body readers left after every slow body was answered", n)
	}
	if got := testutil.ToFloat64(g.m.bodyTimeouts); got != slow {
		t.Fatalf("body_timeouts_total %v, want %d", got, slow)
	}
	t.Logf("%d slow bodies answered 408 after %v (body timeout %v)", slow, el.Round(time.Millisecond), bodyTimeout)
}
