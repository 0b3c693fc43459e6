package gateway

// A headless Chromium loads the status page and the test checks the
// keyspace circle: one mark per routing-table node. Chromium is driven by
// chromedriver over the W3C WebDriver HTTP API with net/http and JSON.
// Skipped when chromium or chromedriver is missing, unless
// DHTD_REQUIRE_BROWSER=1 (CI sets it).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/node"
)

// browserPaths returns the chromium and chromedriver binaries, or skips
// (fails with DHTD_REQUIRE_BROWSER=1) when either is missing.
func browserPaths(t *testing.T) (chromium, driver string) {
	t.Helper()
	var missing []string
	for _, name := range []string{"chromium", "chromedriver"} {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
		}
		if name == "chromium" {
			chromium = p
		} else {
			driver = p
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not installed (apt-get install chromium chromium-driver)", strings.Join(missing, " and "))
		if os.Getenv("DHTD_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; DHTD_REQUIRE_BROWSER=1")
		}
		t.Skip(msg)
	}
	return chromium, driver
}

// startDriver starts chromedriver on a free loopback port and returns its
// base URL; it is killed when t ends.
func startDriver(t *testing.T, driver string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, driver, "--port=0", "--allowed-ips=127.0.0.1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`started successfully on port (\d+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
		close(port)
	}()
	select {
	case p, ok := <-port:
		if !ok {
			t.Fatalf("chromedriver exited before listening: %s", stderr.String())
		}
		return "http://127.0.0.1:" + p
	case <-time.After(testWait):
		t.Fatalf("chromedriver did not start within %v", testWait)
	}
	return ""
}

// webDriver is a W3C WebDriver session.
type webDriver struct {
	t      *testing.T
	base   string // http://127.0.0.1:PORT/session/ID
	client *http.Client
}

// wdCall sends one WebDriver command and decodes its "value" into out.
func wdCall(client *http.Client, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, b)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(env.Value, &e)
		return fmt.Errorf("%s %s: %d %s: %s", method, url, resp.StatusCode, e.Error, e.Message)
	}
	if out != nil {
		return json.Unmarshal(env.Value, out)
	}
	return nil
}

func (w *webDriver) cmd(method, path string, body, out any) {
	w.t.Helper()
	if err := wdCall(w.client, method, w.base+path, body, out); err != nil {
		w.t.Fatal(err)
	}
}

// newSession opens a headless Chromium session with extra command-line
// arguments; it is closed when t ends.
func newSession(t *testing.T, driverURL, chromium string, extra ...string) *webDriver {
	t.Helper()
	client := &http.Client{Timeout: 60 * time.Second}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args": append([]string{
				"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--window-size=1280,1100", "--no-first-run", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--disable-default-apps",
				"--user-data-dir=" + t.TempDir(),
			}, extra...),
		},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	if err := wdCall(client, "POST", driverURL+"/session", caps, &sess); err != nil {
		t.Fatalf("new session: %v", err)
	}
	w := &webDriver{t: t, base: driverURL + "/session/" + sess.SessionID, client: client}
	t.Cleanup(func() { _ = wdCall(client, "DELETE", w.base, nil, nil) })
	return w
}

// awaitRender is an async script: it resolves once the page has rendered
// a status at least once after the call (the page fires "dhtd:rendered"),
// with the data-id of every node mark in the circle.
const awaitRender = `
const done = arguments[arguments.length - 1];
const after = arguments[0];
const marks = () => Array.from(document.querySelectorAll('#keyspace .node')).map(e => e.getAttribute('data-id'));
if ((window.dhtdRenders || 0) > after) { done({renders: window.dhtdRenders, ids: marks()}); return; }
window.addEventListener('dhtd:rendered', () => done({renders: window.dhtdRenders, ids: marks()}), {once: true});
`

func TestGatewayBrowserStatusPage(t *testing.T) {
	chromium, driver := browserPaths(t)
	nodes := startNet(t, 12)
	// The gateway's node joins like the others (so its table has split),
	// sampling its history every 100 ms so the charts fill in quickly.
	cfg := node.LoopbackConfig()
	cfg.Bootstrap = []string{nodes[0].Addr().String()}
	cfg.HistoryInterval = 100 * time.Millisecond
	gw, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for range 2 {
		if err := gw.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, ts := serve(t, gw, nil)
	// some traffic, so the page has recent lookups to show: one of them
	// finds nothing.
	callJSON(t, "POST", ts.URL+"/v1/immutable", `{"value":"browser test"}`, http.StatusOK, nil)
	callJSON(t, "POST", ts.URL+"/v1/announce/"+strings.Repeat("b0", 20)+"?port=6881", "", http.StatusOK, nil)
	callJSON(t, "GET", ts.URL+"/v1/nodes/"+nodes[7].ID().String(), "", http.StatusOK, nil)
	if code, _ := call(t, "GET", ts.URL+"/v1/immutable/"+strings.Repeat("c1", 20), ""); code != http.StatusNotFound {
		t.Fatalf("get of an item nobody stored: %d, want 404", code)
	}
	// Two samples at least, for lines in the charts: bounded polling (the
	// history has no event to wait on).
	for deadline := time.Now().Add(testWait); len(gw.Admin().History()) < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("history has %d samples after %v", len(gw.Admin().History()), testWait)
		}
	}
	driverURL := startDriver(t, driver)
	wd := newSession(t, driverURL, chromium)
	wd.cmd("POST", "/timeouts", map[string]any{"script": 20000, "pageLoad": 20000}, nil)
	wd.cmd("POST", "/url", map[string]any{"url": ts.URL + "/"}, nil)

	// The table can change between the page's poll and our snapshot (a
	// node turning questionable, a late insert): compare on successive
	// renders until they agree, a bounded number of times.
	want := routingIDs(gw)
	var got []string
	renders := 0
	for attempt := 0; attempt < 5; attempt++ {
		var res struct {
			Renders int      `json:"renders"`
			IDs     []string `json:"ids"`
		}
		wd.cmd("POST", "/execute/async", map[string]any{"script": awaitRender, "args": []any{renders}}, &res)
		renders = res.Renders
		got = append([]string(nil), res.IDs...)
		sort.Strings(got)
		want = routingIDs(gw)
		if strings.Join(got, ",") == strings.Join(want, ",") {
			break
		}
	}
	if len(want) < 5 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("circle marks %v\nrouting table %v\nwant one mark per table node", got, want)
	}
	// the own id is marked, apart from the nodes.
	var selfIDs []string
	wd.cmd("POST", "/execute/sync", map[string]any{
		"script": `return Array.from(document.querySelectorAll('#keyspace [data-self-id]')).map(e => e.getAttribute('data-self-id'))`,
		"args":   []any{},
	}, &selfIDs)
	if len(selfIDs) != 1 || selfIDs[0] != gw.ID().String() {
		t.Fatalf("self marks %v, want one for %s", selfIDs, gw.ID())
	}
	var text string
	wd.cmd("POST", "/execute/sync", map[string]any{"script": `return document.getElementById('node-id').textContent + ' ' + document.getElementById('bep42').textContent`, "args": []any{}}, &text)
	if !strings.Contains(text, gw.ID().String()) {
		t.Fatalf("page shows %q, want the node id", text)
	}

	// Colours: a node's fill is its state's, and good is green.
	var fills []struct {
		State string `json:"state"`
		Fill  string `json:"fill"`
	}
	wd.cmd("POST", "/execute/sync", map[string]any{
		"script": `return Array.from(document.querySelectorAll('#keyspace .node')).map(e => ({state: e.getAttribute('data-state'), fill: getComputedStyle(e).fill}))`,
		"args":   []any{},
	}, &fills)
	wantFill := map[string]string{"good": "rgb(46, 158, 79)", "questionable": "rgb(208, 138, 0)", "bad": "rgb(208, 48, 43)"}
	good := 0
	for _, f := range fills {
		if f.Fill != wantFill[f.State] {
			t.Errorf("a %s node is drawn %s, want %s", f.State, f.Fill, wantFill[f.State])
		}
		if f.State == "good" {
			good++
		}
	}
	if good < len(fills)/2 || good < 5 {
		t.Errorf("%d of %d nodes good: the table is not healthy", good, len(fills))
	}

	// Charts: five, with lines drawn from the samples.
	var charts []struct {
		Name    string `json:"name"`
		Samples string `json:"samples"`
		Lines   int    `json:"lines"`
		Points  int    `json:"points"`
	}
	wd.cmd("POST", "/execute/sync", map[string]any{
		"script": `return Array.from(document.querySelectorAll('.chart[data-chart]')).map(f => ({name: f.dataset.chart, samples: f.dataset.samples || '',
			lines: f.querySelectorAll('svg polyline').length,
			points: Math.max(0, ...Array.from(f.querySelectorAll('svg polyline')).map(p => p.points.numberOfItems))}))`,
		"args": []any{},
	}, &charts)
	names := map[string]bool{}
	for _, c := range charts {
		names[c.Name] = true
		if c.Name == "packets" || c.Name == "table" || c.Name == "lookups" {
			if c.Lines < 1 || c.Points < 2 {
				t.Errorf("chart %s: %d lines, at most %d points; want lines from %s samples", c.Name, c.Lines, c.Points, c.Samples)
			}
		}
	}
	for _, n := range []string{"packets", "answers", "drops", "lookups", "table"} {
		if !names[n] {
			t.Errorf("no %s chart (charts: %+v)", n, charts)
		}
	}

	// Outcomes: the get that found nothing says so.
	var outcomes []string
	wd.cmd("POST", "/execute/sync", map[string]any{
		"script": `return Array.from(document.querySelectorAll('#lookups td[class^=outcome-]')).map(e => e.className + ':' + e.textContent)`,
		"args":   []any{},
	}, &outcomes)
	if !slices.Contains(outcomes, "outcome-not_found:not found") {
		t.Errorf("lookup outcomes %v: want the get of a missing item shown as not found", outcomes)
	}
	shot(t, wd, "status-page.png")
	wd.cmd("POST", "/execute/sync", map[string]any{"script": `document.getElementById('charts-card').scrollIntoView()`, "args": []any{}}, nil)
	shot(t, wd, "status-page-charts.png")

	// Narrow: at 420 px the page does not scroll sideways, and ids do not
	// break inside.
	wd.cmd("POST", "/window/rect", map[string]any{"width": 420, "height": 1100}, nil)
	var narrow struct {
		Scroll int    `json:"scroll"`
		Inner  int    `json:"inner"`
		Wrap   string `json:"wrap"`
	}
	wd.cmd("POST", "/execute/sync", map[string]any{
		"script": `return {scroll: document.documentElement.scrollWidth, inner: document.documentElement.clientWidth, wrap: getComputedStyle(document.getElementById('node-id')).whiteSpace}`,
		"args":   []any{},
	}, &narrow)
	if narrow.Inner > 440 || narrow.Scroll > narrow.Inner || narrow.Wrap != "nowrap" {
		t.Errorf("at 420 px: scroll width %d, client width %d, id white-space %q; want no sideways scroll, nowrap", narrow.Scroll, narrow.Inner, narrow.Wrap)
	}
	shot(t, wd, "status-page-narrow.png")
	t.Logf("status page: %d marks for %d table nodes, %d good (green); charts %+v", len(got), len(want), good, charts)
}

// shot saves a screenshot of the page as name in $DHTD_ARTIFACTS (else a
// temporary directory).
func shot(t *testing.T, wd *webDriver, name string) {
	t.Helper()
	var b64 string
	wd.cmd("GET", "/screenshot", nil, &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	dir := os.Getenv("DHTD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// TestGatewayBrowserDualStack (BEP 32): the status page of a dual-stack
// node lists both families' nodes, each with its id, address and a table
// holding the node of its family that joined through it.
func TestGatewayBrowserDualStack(t *testing.T) {
	chromium, driver := browserPaths(t)
	if pc, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		pc.Close()
	}
	scfg := node.LoopbackConfig()
	scfg.HistoryInterval = 100 * time.Millisecond // the charts fill in quickly
	s, err := node.NewStack(scfg, "127.0.0.1:0", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for _, n := range s.Nodes() {
		cfg := node.LoopbackConfig()
		cfg.Listen, cfg.Bootstrap = "127.0.0.1:0", []string{n.Addr().String()}
		if n.Stats().Family == "ipv6" {
			cfg.Listen = "[::1]:0"
		}
		j, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		if err := j.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	g, err := NewStack(s, Config{Registry: prometheus.NewRegistry(), RatePerSecond: 1e9, RateBurst: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)
	// Two samples at least in each family's history, for lines in the
	// charts: bounded polling (the history has no event to wait on).
	for _, n := range s.Nodes() {
		for deadline := time.Now().Add(testWait); len(n.Admin().History()) < 3; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s history has %d samples after %v", n.Stats().Family, len(n.Admin().History()), testWait)
			}
		}
	}
	var st struct {
		Families []struct {
			Family  string               `json:"family"`
			History []node.HistorySample `json:"history"`
		} `json:"families"`
	}
	callJSON(t, "GET", ts.URL+"/v1/status?history=1", "", http.StatusOK, &st)
	if len(st.Families) != 2 || len(st.Families[0].History) < 3 || len(st.Families[1].History) < 3 {
		t.Fatalf("/v1/status?history=1 families: %+v, want both with their history", st.Families)
	}

	driverURL := startDriver(t, driver)
	wd := newSession(t, driverURL, chromium)
	wd.cmd("POST", "/timeouts", map[string]any{"script": 20000, "pageLoad": 20000}, nil)
	wd.cmd("POST", "/url", map[string]any{"url": ts.URL + "/"}, nil)
	type family struct {
		Family string `json:"family"`
		ID     string `json:"id"`
		Addr   string `json:"addr"`
		Counts string `json:"counts"`
		Rows   int    `json:"rows"`
	}
	var got []family
	want := map[string]*node.Node{"ipv4": s.IPv4(), "ipv6": s.IPv6()}
	ok := func() bool {
		if len(got) != 2 {
			return false
		}
		for _, f := range got {
			n := want[f.Family]
			if n == nil || f.ID != n.ID().String() || f.Addr != "udp://"+n.Addr().String() || !regexp.MustCompile(`^[1-9][0-9]* good`).MatchString(f.Counts) || f.Rows < 1 {
				return false
			}
		}
		return got[0].Family != got[1].Family
	}
	// The tables can still be filling when the page first polls: check
	// successive renders, a bounded number of times.
	renders := 0
	for attempt := 0; attempt < 5 && !ok(); attempt++ {
		var res struct {
			Renders int `json:"renders"`
		}
		wd.cmd("POST", "/execute/async", map[string]any{"script": awaitRender, "args": []any{renders}}, &res)
		renders = res.Renders
		wd.cmd("POST", "/execute/sync", map[string]any{
			"script": `return Array.from(document.querySelectorAll('#families .family')).map(f => ({family: f.dataset.family,
				id: f.querySelector('.family-id').textContent, addr: f.querySelector('.family-addr').textContent,
				counts: f.querySelector('.family-counts').textContent, rows: f.querySelectorAll('.family-buckets tbody tr').length}))`,
			"args": []any{},
		}, &got)
	}
	if !ok() {
		t.Fatalf("families on the page %+v\nwant ipv4 %s at %s and ipv6 %s at %s, each with a good node in a bucket",
			got, s.IPv4().ID(), s.IPv4().Addr(), s.IPv6().ID(), s.IPv6().Addr())
	}
	wd.cmd("POST", "/execute/sync", map[string]any{"script": `document.getElementById('families-card').scrollIntoView()`, "args": []any{}}, nil)
	shot(t, wd, "status-page-dualstack.png")

	// The charts draw each family's history: the table chart has one line
	// per family, each from more than one sample.
	var lines []struct {
		Series string `json:"series"`
		Points int    `json:"points"`
	}
	wd.cmd("POST", "/execute/sync", map[string]any{
		"script": `return Array.from(document.querySelectorAll('.chart[data-chart="table"] svg polyline')).map(p => ({series: p.dataset.series, points: p.points.numberOfItems}))`,
		"args":   []any{},
	}, &lines)
	series := map[string]int{}
	for _, l := range lines {
		series[l.Series] = l.Points
	}
	if len(series) != 2 || series["nodes ipv4"] < 2 || series["nodes ipv6"] < 2 {
		t.Errorf("table chart lines %+v, want \"nodes ipv4\" and \"nodes ipv6\" from 2 samples or more", lines)
	}
}
