package gateway

// A headless Chromium plays the malicious web page: one served from another
// loopback origin (127.0.0.2) fires no-cors fetches and form posts at the
// gateway, and one reached through a rebound DNS name (evil.example mapped
// to the gateway's address, as DNS rebinding would) posts JSON as if it
// were same-origin. The gateway's network must store and announce nothing.
// A same-origin page then stores an item, so the check can see a write.

import (
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/internal/httpguard"
	"github.com/dhtd/dhtd/node"
)

// attackPage fires four cross-site writes at the gateway when it loads and
// sets window.attack, a promise of their outcomes: two no-cors fetches
// with a text/plain body (the CORS "simple request" a page may send
// without asking) and two form posts into hidden frames.
var attackPage = template.Must(template.New("attack").Parse(`<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="f1" method="POST" enctype="text/plain" target="sink1" action="{{.GW}}/v1/immutable"><input name='{"value":"csrf form' value='"}'></form>
<form id="f2" method="POST" target="sink2" action="{{.GW}}/v1/announce/{{.IH2}}?port=6882"><input name="x" value="1"></form>
<script>
const gw = {{.GW}};
const settle = p => p.then(r => 'resolved ' + r.type, e => 'rejected ' + e);
const framed = (name, form) => new Promise(res => {
  document.querySelector('iframe[name=' + name + ']').addEventListener('load', () => res('frame loaded'), {once: true});
  document.getElementById(form).submit();
});
window.addEventListener('load', () => {
  window.attack = Promise.all([
    settle(fetch(gw + '/v1/immutable', {method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body: '{"value":"csrf fetch"}'})),
    settle(fetch(gw + '/v1/announce/{{.IH1}}?port=6881', {method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body: ''})),
    framed('sink1', 'f1'),
    framed('sink2', 'f2'),
  ]);
});
</script>
</body></html>
`))

// fetchStatus is an async script: fetch(arguments[0], arguments[1]) from
// the current page, resolving to the answer's status (0 if it failed).
const fetchStatus = `
const done = arguments[arguments.length - 1];
fetch(arguments[0], arguments[1]).then(r => done(r.status), e => done(0));
`

// storedAnywhere sums the items and infohashes every node stores.
func storedAnywhere(nodes []*node.Node) (items, infohashes int) {
	for _, n := range nodes {
		st := n.Stats()
		items += st.Items.Immutable + st.Items.Mutable
		infohashes += st.Peers.Infohashes
	}
	return items, infohashes
}

func TestGatewayBrowserCrossSiteWrites(t *testing.T) {
	chromium, driver := browserPaths(t)
	nodes := startNet(t, 4)
	g, ts := serve(t, nodes[0], nil)
	gwPort := ts.Listener.Addr().(*net.TCPAddr).Port

	// the attacker's site, on another loopback address.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	attacker := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = attackPage.Execute(w, map[string]string{
			"GW": ts.URL, "IH1": strings.Repeat("c1", 20), "IH2": strings.Repeat("c2", 20),
		})
	})}
	go func() { _ = attacker.Serve(ln) }()
	t.Cleanup(func() { _ = attacker.Close() })

	driverURL := startDriver(t, driver)
	wd := newSession(t, driverURL, chromium,
		// DNS rebinding, made deterministic: the attacker's name resolves
		// to the gateway's address.
		"--host-resolver-rules=MAP evil.example 127.0.0.1",
		"--disable-features=HttpsUpgrades")
	wd.cmd("POST", "/timeouts", map[string]any{"script": 20000, "pageLoad": 20000}, nil)

	// 1. cross-site writes from http://127.0.0.2:PORT/.
	wd.cmd("POST", "/url", map[string]any{"url": "http://" + ln.Addr().String() + "/"}, nil)
	var outcomes []string
	wd.cmd("POST", "/execute/async", map[string]any{
		"script": `const done = arguments[0]; window.attack.then(done, e => done([String(e)]));`, "args": []any{},
	}, &outcomes)
	if len(outcomes) != 4 {
		t.Fatalf("attack page outcomes %v: want four settled requests", outcomes)
	}

	// 2. the rebound name: the browser takes evil.example:PORT for the
	// page's own origin, so it sends whatever the page asks.
	evil := fmt.Sprintf("http://evil.example:%d", gwPort)
	wd.cmd("POST", "/url", map[string]any{"url": evil + "/v1/ping"}, nil)
	var statusCode, putCode int
	wd.cmd("POST", "/execute/async", map[string]any{"script": fetchStatus, "args": []any{"/v1/status", map[string]any{}}}, &statusCode)
	wd.cmd("POST", "/execute/async", map[string]any{"script": fetchStatus, "args": []any{"/v1/immutable", map[string]any{
		"method": "POST", "headers": map[string]string{"Content-Type": "application/json"}, "body": `{"value":"rebound"}`,
	}}}, &putCode)
	t.Logf("cross-site outcomes %v; via evil.example: GET /v1/status %d, POST /v1/immutable %d", outcomes, statusCode, putCode)

	items, infohashes := storedAnywhere(nodes)
	puts := testutil.ToFloat64(g.m.requests.WithLabelValues("immutable_put", "200"))
	announces := testutil.ToFloat64(g.m.requests.WithLabelValues("announce", "200"))
	if items != 0 || infohashes != 0 || puts != 0 || announces != 0 {
		t.Errorf("after the attacks the network stores %d items and %d infohashes; the gateway answered %v puts and %v announces with 200: want none",
			items, infohashes, puts, announces)
	}
	if statusCode != http.StatusMisdirectedRequest || putCode != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example: GET /v1/status %d, POST /v1/immutable %d: want 421 for both", statusCode, putCode)
	}
	// every attack reached the gateway and was refused, none got lost on
	// the way (which would make the check above vacuous).
	refused := 0.0
	byReason := map[string]float64{}
	for _, reason := range httpguard.Reasons {
		byReason[reason] = testutil.ToFloat64(g.m.refused.WithLabelValues(reason))
		refused += byReason[reason]
	}
	t.Logf("refused by reason: %v", byReason)
	if refused < 6 {
		t.Errorf("dhtd_gateway_refused_total %v, want at least the 6 requests of the attack", refused)
	}

	// 3. control: the gateway's own page can write, and the check sees it.
	wd.cmd("POST", "/url", map[string]any{"url": ts.URL + "/"}, nil)
	var ownCode int
	wd.cmd("POST", "/execute/async", map[string]any{"script": fetchStatus, "args": []any{"/v1/immutable", map[string]any{
		"method": "POST", "headers": map[string]string{"Content-Type": "application/json"}, "body": `{"value":"same origin"}`,
	}}}, &ownCode)
	if items, _ := storedAnywhere(nodes); ownCode != http.StatusOK || items == 0 {
		t.Fatalf("same-origin put from the status page: status %d, %d items stored: want 200 and the item stored", ownCode, items)
	}
}
