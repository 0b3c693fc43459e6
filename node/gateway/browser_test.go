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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
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
	gw := nodes[1] // a node that bootstrapped, so its table has split
	_, ts := serve(t, gw, nil)
	// some traffic, so the page has recent lookups to show.
	callJSON(t, "POST", ts.URL+"/v1/immutable", `{"value":"browser test"}`, http.StatusOK, nil)
	callJSON(t, "POST", ts.URL+"/v1/announce/"+strings.Repeat("b0", 20)+"?port=6881", "", http.StatusOK, nil)
	callJSON(t, "GET", ts.URL+"/v1/nodes/"+nodes[7].ID().String(), "", http.StatusOK, nil)
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

	var shot string
	wd.cmd("GET", "/screenshot", nil, &shot)
	png, err := base64.StdEncoding.DecodeString(shot)
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
	path := filepath.Join(dir, "status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("status page: %d marks for %d table nodes; screenshot %s (%d bytes)", len(got), len(want), path, len(png))
}
