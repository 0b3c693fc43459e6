package main

// The harness of the end-to-end tests (e2e_test.go and others): the dhtd
// binary built once, dhtd processes with their logs, HTTP and probe helpers,
// and readers of Prometheus expositions and bencoded packets.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	// e2eWait bounds every wait for an event of a dhtd process (a log line,
	// a routing table entry, an exit).
	e2eWait = 15 * time.Second
	// cmdTimeout bounds every short-lived dhtd invocation.
	cmdTimeout = 20 * time.Second
	// buildTimeout bounds `go build`.
	buildTimeout = 5 * time.Minute
)

// raceEnabled builds the binary with -race (DHTD_E2E_RACE=1), so that a
// data race in a real process fails the test. Off by default: the race
// detector already covers the same code in the node package's in-process
// tests, and a -race build of the binary costs CI a minute.
var raceEnabled = os.Getenv("DHTD_E2E_RACE") == "1"

var dhtdBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// hermeticHome is a temporary directory that every dhtd the tests start
// gets as HOME and XDG_STATE_HOME, so that no test touches the real home
// (the default --data-dir is under it). Made once, removed by TestMain.
var hermeticHome struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dhtdBuild.dir != "" {
		_ = os.RemoveAll(dhtdBuild.dir)
	}
	if hermeticHome.dir != "" {
		_ = os.RemoveAll(hermeticHome.dir)
	}
	os.Exit(code)
}

// dhtdBinary skips the test under -short, and otherwise returns the path of
// the dhtd binary, built once per test run.
func dhtdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the dhtd binary; skipped with -short")
	}
	dhtdBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "dhtd-e2e-")
		if err != nil {
			dhtdBuild.err = err
			return
		}
		dhtdBuild.dir = dir
		bin := filepath.Join(dir, "dhtd")
		args := []string{"build", "-o", bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, ".")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			dhtdBuild.err = fmt.Errorf("go %s: %v (after %v)\n%s", strings.Join(args, " "), err, time.Since(start), out)
			return
		}
		dhtdBuild.bin = bin
	})
	if dhtdBuild.err != nil {
		t.Fatalf("building dhtd: %v", dhtdBuild.err)
	}
	return dhtdBuild.bin
}

// hermeticEnv is the environment without DHTD_* variables, which would
// otherwise set `run` flags (DHTD_BOOTSTRAP, DHTD_LISTEN, ...), and with
// HOME and XDG_STATE_HOME pointing into a temporary directory shared by the
// test run, so that a dhtd without --data-dir never writes to the real
// home. It panics if that directory cannot be made.
func hermeticEnv() []string {
	hermeticHome.once.Do(func() {
		hermeticHome.dir, hermeticHome.err = os.MkdirTemp("", "dhtd-e2e-home-")
	})
	if hermeticHome.err != nil {
		panic(fmt.Sprintf("hermetic home directory: %v", hermeticHome.err))
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DHTD_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+hermeticHome.dir, "XDG_STATE_HOME="+filepath.Join(hermeticHome.dir, "state"))
	if raceEnabled && os.Getenv("GORACE") == "" {
		// A -race binary sleeps 1s at exit by default (atexit_sleep_ms);
		// keep a short grace period for late reports.
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return env
}

// checkNoRace fails t if output holds a race detector report.
func checkNoRace(t *testing.T, what, output string) {
	t.Helper()
	if strings.Contains(output, "WARNING: DATA RACE") {
		t.Errorf("%s: the race detector reported a data race:\n%s", what, output)
	}
}

// lineLog collects a process's stderr lines and wakes waiters on each one.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	eof     bool
	changed chan struct{}
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.eof = true
	close(l.changed)
	l.changed = make(chan struct{})
}

// since returns the lines from index i on, whether the stream has ended, and
// a channel closed at the next change.
func (l *lineLog) since(i int) ([]string, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines[i:]...), l.eof, l.changed
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// dhtdNode is a running `dhtd run` process.
type dhtdNode struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lineLog
	stdout bytes.Buffer // read only after done
	done   chan struct{}

	Addr    string // UDP address, from the "dht node started" line
	ID      string // node id, from the same line
	Metrics string // metrics HTTP address, from the "metrics listening" line
}

var (
	reAddr = regexp.MustCompile(`(?:^| )addr=(\S+)`)
	reID   = regexp.MustCompile(`(?:^| )id=([0-9a-f]{40})(?: |$)`)
)

// startNode starts `dhtd run --listen 127.0.0.1:0 --metrics-listen
// 127.0.0.1:0 [--data-dir T] extra...`, waits for its "dht node started"
// and "metrics listening" lines and stops it (SIGTERM, then SIGKILL) when t
// ends. extra must hold --no-bootstrap or --bootstrap so the node never
// contacts the public routers (or --config, whose file must name them).
// Unless extra holds --data-dir or --storage, the node gets a fresh t.TempDir() as --data-dir, so nodes running in
// parallel never share a database.
func startNode(t *testing.T, extra ...string) *dhtdNode {
	t.Helper()
	return startNodeEnv(t, nil, extra...)
}

// startNodeEnv is startNode with env added to the hermetic environment
// (later entries win). An env that sets DHTD_DATA_DIR, DHTD_STORAGE or
// XDG_STATE_HOME chooses the state, like --data-dir or --storage.
func startNodeEnv(t *testing.T, env []string, extra ...string) *dhtdNode {
	t.Helper()
	bin := dhtdBinary(t)
	hasBoot, hasState := false, hasStateArg(extra)
	for _, kv := range env {
		for _, v := range []string{"DHTD_DATA_DIR=", "DHTD_STORAGE=", "XDG_STATE_HOME="} {
			hasState = hasState || strings.HasPrefix(kv, v)
		}
	}
	for _, a := range extra {
		if a == "--no-bootstrap" || a == "--bootstrap" || strings.HasPrefix(a, "--bootstrap=") || a == "--config" {
			hasBoot = true
		}
	}
	if !hasBoot {
		t.Fatalf("startNode %q: pass --no-bootstrap or --bootstrap (never the public routers)", extra)
	}
	args := []string{"run", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}
	if !hasState {
		args = append(args, "--data-dir", t.TempDir())
	}
	args = append(args, extra...)
	n := &dhtdNode{t: t, stderr: newLineLog(), done: make(chan struct{})}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = append(hermeticEnv(), env...)
	n.cmd.Stdout = &n.stdout
	pipe, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start dhtd %q: %v", args, err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			n.stderr.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pipe) // after an over-long line
		n.stderr.close()
		_ = n.cmd.Wait() // the exit status is read from cmd.ProcessState
		close(n.done)
	}()
	t.Cleanup(func() {
		n.stop()
		checkNoRace(t, "dhtd run", n.stderr.String())
		if t.Failed() {
			t.Logf("dhtd run %q stderr:\n%s", extra, n.stderr.String())
		}
	})

	started := n.waitLine(`msg="dht node started"`)
	m := reAddr.FindStringSubmatch(started)
	id := reID.FindStringSubmatch(started)
	if m == nil || id == nil {
		t.Fatalf("no addr= or id= in %q", started)
	}
	n.Addr, n.ID = m[1], id[1]
	if !strings.HasPrefix(n.Addr, "127.0.0.1:") || strings.HasSuffix(n.Addr, ":0") {
		t.Fatalf("node address %q: want 127.0.0.1 and a real port", n.Addr)
	}
	ml := n.waitLine(`msg="metrics listening"`)
	if m = reAddr.FindStringSubmatch(ml); m == nil {
		t.Fatalf("no addr= in %q", ml)
	}
	n.Metrics = m[1]
	return n
}

// waitLine waits for the first stderr line containing substr and returns it.
func (n *dhtdNode) waitLine(substr string) string {
	n.t.Helper()
	deadline := time.NewTimer(e2eWait)
	defer deadline.Stop()
	i := 0
	for {
		lines, eof, changed := n.stderr.since(i)
		for _, l := range lines {
			if strings.Contains(l, substr) {
				return l
			}
		}
		i += len(lines)
		if eof {
			<-n.done
			n.t.Fatalf("dhtd exited (%v) before logging %q", n.cmd.ProcessState, substr)
		}
		select {
		case <-changed:
		case <-deadline.C:
			n.t.Fatalf("no stderr line with %q within %v", substr, e2eWait)
		}
	}
}

// exited waits up to d for the process to exit.
func (n *dhtdNode) exited(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-n.done:
		return true
	case <-timer.C:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// a few seconds.
func (n *dhtdNode) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	if n.exited(5 * time.Second) {
		return
	}
	n.t.Errorf("dhtd did not exit within 5s of SIGTERM; killing it")
	_ = n.cmd.Process.Kill()
	if !n.exited(5 * time.Second) {
		n.t.Errorf("dhtd did not exit within 5s of SIGKILL")
	}
}

// routingDump is the part of /debug/routing the tests read.
type routingDump struct {
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	Good    int    `json:"good"`
	Buckets []struct {
		Nodes []struct {
			ID        string `json:"id"`
			Addr      string `json:"addr"`
			State     string `json:"state"`
			Confirmed bool   `json:"confirmed"`
		} `json:"nodes"`
	} `json:"buckets"`
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// httpGet fetches http://addr/path and returns the status and body.
func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func (n *dhtdNode) routing(t *testing.T) routingDump {
	t.Helper()
	code, body := httpGet(t, n.Metrics, "/debug/routing")
	if code != http.StatusOK {
		t.Fatalf("/debug/routing: status %d: %s", code, body)
	}
	var d routingDump
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("/debug/routing: %v\n%s", err, body)
	}
	return d
}

// waitKnows polls n's /debug/routing until other is a confirmed live node of
// its table. There is no event for a table change, so this is bounded
// polling.
func (n *dhtdNode) waitKnows(t *testing.T, other *dhtdNode) routingDump {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		d := n.routing(t)
		for _, b := range d.Buckets {
			for _, e := range b.Nodes {
				if e.ID == other.ID && e.Addr == other.Addr && e.Confirmed && e.State != "bad" {
					return d
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not get %s (%s) into its routing table within %v; last dump: %+v",
				n.Addr, other.ID, other.Addr, e2eWait, d)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// cmdResult is the outcome of one short-lived dhtd command.
type cmdResult struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// runDhtd runs the dhtd binary with args to completion (bounded by
// cmdTimeout) and returns its output and exit status.
func runDhtd(t *testing.T, args ...string) cmdResult {
	t.Helper()
	return runDhtdEnv(t, nil, args...)
}

// runDhtdEnv is runDhtd with extra environment variables.
func runDhtdEnv(t *testing.T, env []string, args ...string) cmdResult {
	t.Helper()
	bin := dhtdBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(hermeticEnv(), env...)
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	checkNoRace(t, fmt.Sprintf("dhtd %q", args), res.stderr)
	if ctx.Err() != nil {
		t.Fatalf("dhtd %q did not finish within %v\nstdout:\n%s\nstderr:\n%s", args, cmdTimeout, res.stdout, res.stderr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("dhtd %q: %v", args, err)
	}
	return res
}

// probeResultJSON mirrors the probe's --json object.
type probeResultJSON struct {
	Addr          string  `json:"addr"`
	Method        string  `json:"method"`
	RTTMillis     float64 `json:"rtt_ms"`
	ID            string  `json:"id"`
	ClientVersion string  `json:"client_version"`
	YourIP        string  `json:"your_ip"`
	Nodes         []struct {
		ID   string `json:"id"`
		Addr string `json:"addr"`
	} `json:"nodes"`
	Error *jsonError `json:"error"`
}

func parseProbeJSON(t *testing.T, r cmdResult) probeResultJSON {
	t.Helper()
	out := strings.TrimSpace(r.stdout)
	if strings.Count(out, "\n") != 0 {
		t.Fatalf("--json: want one line, got:\n%s", r.stdout)
	}
	var p probeResultJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, r.stdout)
	}
	return p
}

// metricValue finds the sample of metric name whose labels include want in
// a Prometheus text exposition and returns its value. name is a family, or
// a histogram's or summary's name with _count or _sum.
func metricValue(t *testing.T, exposition, name string, want map[string]string) (float64, bool) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	fam, suffix := fams[name], ""
	for _, s := range []string{"_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, s); ok && fam == nil && fams[base] != nil {
			fam, suffix = fams[base], s
		}
	}
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case suffix == "_count" && m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case suffix == "_sum" && m.Histogram != nil:
			return m.GetHistogram().GetSampleSum(), true
		case suffix == "_count" && m.Summary != nil:
			return float64(m.GetSummary().GetSampleCount()), true
		case suffix == "_sum" && m.Summary != nil:
			return m.GetSummary().GetSampleSum(), true
		case suffix != "":
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// hasLabels reports whether m has every label of want.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// bdict decodes a bencoded dict or fails t.
func bdict(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d, err := bdecodeDict(b)
	if err != nil {
		t.Fatalf("bdecode %q: %v", b, err)
	}
	return d
}

// bdecodeDict decodes a bencoded dict with anacrolix's bencode, not with
// package krpc, for reading the queries dhtd sends: strings decode to
// string, integers to int64, lists to []any and dicts to map[string]any.
func bdecodeDict(b []byte) (map[string]any, error) {
	var d map[string]any
	if err := bencode.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("not a dict")
	}
	return d, nil
}
