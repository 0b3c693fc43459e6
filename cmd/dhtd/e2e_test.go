package main

// End-to-end tests of the dhtd binary: they build it once, start real `dhtd
// run` processes on loopback and talk to them with `dhtd probe`, over HTTP
// (the metrics listener) and through test-owned UDP sockets. Nothing leaves
// 127.0.0.1: every `run` gets --bootstrap or --no-bootstrap. Skipped with
// -short.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	reAnswered = regexp.MustCompile(`(?m)^ping (\S+): answered in ([0-9.]+) ms$`)
	reIDLine   = regexp.MustCompile(`(?m)^  id: +([0-9a-f]{40})$`)
)

func TestTwoRunProcessesFindEachOther(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	a := startNode(t, "--no-bootstrap")
	b := startNode(t, "--bootstrap", a.Addr)

	// Both tables end up holding the other, as a confirmed live node.
	start := time.Now()
	da := a.waitKnows(t, b)
	db := b.waitKnows(t, a)
	t.Logf("both routing tables hold the other node %v after B started", time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		n *dhtdNode
		d routingDump
	}{{a, da}, {b, db}} {
		if c.d.ID != c.n.ID || c.d.Addr != c.n.Addr {
			t.Errorf("/debug/routing of %s says id=%s addr=%s; the start line said id=%s addr=%s",
				c.n.Addr, c.d.ID, c.d.Addr, c.n.ID, c.n.Addr)
		}
	}

	for _, n := range []*dhtdNode{a, b} {
		want := n.routing(t).ID

		// Plain output: the responder's id and a round-trip time.
		r := runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", n.Addr)
		if r.code != 0 {
			t.Fatalf("probe ping %s: exit %d\nstdout:\n%s\nstderr:\n%s", n.Addr, r.code, r.stdout, r.stderr)
		}
		m := reAnswered.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("probe ping %s: no \"answered in ... ms\" line:\n%s", n.Addr, r.stdout)
		}
		if m[1] != n.Addr {
			t.Errorf("probe ping %s: printed address %s", n.Addr, m[1])
		}
		if rtt, err := strconv.ParseFloat(m[2], 64); err != nil || rtt <= 0 {
			t.Errorf("probe ping %s: round-trip time %q: want a positive number of ms", n.Addr, m[2])
		}
		id := reIDLine.FindStringSubmatch(r.stdout)
		if id == nil {
			t.Fatalf("probe ping %s: no id line:\n%s", n.Addr, r.stdout)
		}
		if id[1] != want {
			t.Errorf("probe ping %s: id %s, /debug/routing says %s", n.Addr, id[1], want)
		}

		// --json: one object with the same id and a positive rtt_ms. The
		// flag comes after the address, as in the README.
		r = runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", n.Addr, "--json")
		if r.code != 0 {
			t.Fatalf("probe ping --json %s: exit %d\nstdout:\n%s\nstderr:\n%s", n.Addr, r.code, r.stdout, r.stderr)
		}
		p := parseProbeJSON(t, r)
		if p.ID != want {
			t.Errorf("probe ping --json %s: id %q, want %s", n.Addr, p.ID, want)
		}
		if p.RTTMillis <= 0 {
			t.Errorf("probe ping --json %s: rtt_ms %v, want > 0", n.Addr, p.RTTMillis)
		}
		if p.Addr != n.Addr || p.Method != "ping" {
			t.Errorf("probe ping --json %s: addr %q method %q", n.Addr, p.Addr, p.Method)
		}
		if p.ClientVersion != "DH 0.1" {
			t.Errorf("probe ping --json %s: client_version %q, want \"DH 0.1\"", n.Addr, p.ClientVersion)
		}
		if !strings.HasPrefix(p.YourIP, "127.0.0.1:") {
			t.Errorf("probe ping --json %s: your_ip %q, want 127.0.0.1:port (BEP 42)", n.Addr, p.YourIP)
		}
		if p.Error != nil {
			t.Errorf("probe ping --json %s: unexpected error fields %+v", n.Addr, p)
		}
	}

	// find_node against A for B's id returns B.
	r := runDhtd(t, "probe", "find_node", "--json", "--bind", "127.0.0.1:0", a.Addr, b.ID)
	if r.code != 0 {
		t.Fatalf("probe find_node: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	p := parseProbeJSON(t, r)
	found := false
	for _, nd := range p.Nodes {
		if nd.ID == b.ID && nd.Addr == b.Addr {
			found = true
		}
	}
	if !found {
		t.Errorf("probe find_node %s %s: B (%s) not among the nodes %+v", a.Addr, b.ID, b.Addr, p.Nodes)
	}
	if p.ID != a.ID {
		t.Errorf("probe find_node: responder id %s, want A's %s", p.ID, a.ID)
	}
	r = runDhtd(t, "probe", "find_node", "--bind", "127.0.0.1:0", a.Addr, b.ID)
	if r.code != 0 {
		t.Fatalf("probe find_node (plain): exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^ +` + b.ID + ` ` + regexp.QuoteMeta(b.Addr) + `$`).MatchString(r.stdout) {
		t.Errorf("probe find_node (plain): no line \"%s %s\":\n%s", b.ID, b.Addr, r.stdout)
	}
}

// silentUDP opens a loopback UDP socket that the test owns, closed when t
// ends.
func silentUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func TestProbeTimeoutExitsNonZero(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	pc := silentUDP(t) // receives, never answers
	addr := pc.LocalAddr().String()
	for _, jsonOut := range []bool{false, true} {
		args := []string{"probe", "ping", "--timeout", "300ms", "--bind", "127.0.0.1:0"}
		if jsonOut {
			args = append(args, "--json")
		}
		r := runDhtd(t, append(args, addr)...)
		if r.code == 0 {
			t.Fatalf("dhtd %q: exit 0 for a node that never answers\n%s", args, r.stdout)
		}
		if r.elapsed < 300*time.Millisecond {
			t.Errorf("dhtd %q: gave up after %v, before the 300ms timeout", args, r.elapsed)
		}
		if jsonOut {
			p := parseProbeJSON(t, r)
			if p.Error == nil || !strings.Contains(p.Error.Message, "timed out") {
				t.Errorf("--json: error %+v, want it to say timed out", p.Error)
			}
		} else if !strings.Contains(r.stdout+r.stderr, "timed out") {
			t.Errorf("dhtd %q: output does not say timed out:\nstdout:\n%s\nstderr:\n%s", args, r.stdout, r.stderr)
		}
		// The query did reach the socket (the probe is not failing early).
		buf := make([]byte, 1500)
		_ = pc.SetReadDeadline(time.Now().Add(e2eWait))
		n, _, err := pc.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("the probe's query never reached the test socket: %v", err)
		}
		if q := bdict(t, buf[:n]); q["y"] != "q" || q["q"] != "ping" {
			t.Errorf("the probe sent %q, want a ping query", buf[:n])
		}
	}
}

// krpcErrorServer answers every query that reaches it with the KRPC error
// [204, "Method Unknown"]. It returns the address and a channel that
// receives each query's method.
func krpcErrorServer(t *testing.T) (string, <-chan string) {
	t.Helper()
	pc := silentUDP(t)
	methods := make(chan string, 16)
	answerWithError(t, pc, 204, "Method Unknown", func(method string) {
		select {
		case methods <- method:
		default:
		}
	})
	return pc.LocalAddr().String(), methods
}

// answerWithError answers every query that reaches pc with the KRPC error
// [code, msg], bencoded by hand with the query's "t", and passes each
// query's method to seen (if set), until t ends: its cleanup closes pc and
// waits for the goroutine.
func answerWithError(t *testing.T, pc *net.UDPConn, code int, msg string, seen func(method string)) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return // closed by the cleanup
			}
			q, err := bdecodeDict(buf[:n])
			if err != nil || q["y"] != "q" {
				continue
			}
			tid, _ := q["t"].(string)
			reply := fmt.Sprintf("d1:eli%de%d:%se1:t%d:%s1:y1:ee", code, len(msg), msg, len(tid), tid)
			_, _ = pc.WriteToUDP([]byte(reply), from)
			if seen != nil {
				seen(fmt.Sprint(q["q"]))
			}
		}
	}()
}

func TestProbeKRPCError(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	addr, methods := krpcErrorServer(t)

	r := runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", addr)
	if r.code == 0 {
		t.Fatalf("probe ping: exit 0 on a KRPC error\n%s", r.stdout)
	}
	out := r.stdout + r.stderr
	if !strings.Contains(out, "204") || !strings.Contains(out, "Method Unknown") {
		t.Errorf("probe ping: output does not show the code 204 and the message:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if got := <-methods; got != "ping" {
		t.Errorf("the server saw method %q, want ping", got)
	}

	r = runDhtd(t, "probe", "find_node", "--json", "--bind", "127.0.0.1:0", addr, strings.Repeat("ab", 20))
	if r.code == 0 {
		t.Fatalf("probe find_node --json: exit 0 on a KRPC error\n%s", r.stdout)
	}
	p := parseProbeJSON(t, r)
	if p.Error == nil || p.Error.Code != 204 || !strings.Contains(p.Error.Message, "Method Unknown") || p.Error.Node != addr {
		t.Errorf("--json: error %+v, want code 204, \"Method Unknown\" from %s\n%s", p.Error, addr, r.stdout)
	}
	if p.Method != "find_node" || p.Addr != addr {
		t.Errorf("--json: method %q addr %q", p.Method, p.Addr)
	}
	if got := <-methods; got != "find_node" {
		t.Errorf("the server saw method %q, want find_node", got)
	}
}

func TestRunBadConfig(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	busyUDP := silentUDP(t) // a UDP port in use
	busyTCP, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busyTCP.Close() })

	cases := []struct {
		name string
		args []string
		want []string // every one must be in the error line (case-insensitive)
		// logs allows slog lines before the error (the node had started).
		logs bool
	}{
		{"listen not an address", []string{"--listen", "notanaddress"}, []string{"--listen", "notanaddress"}, false},
		{"id not hex", []string{"--listen", "127.0.0.1:0", "--id", "zz"}, []string{"--id"}, false},
		{"id wrong length of hex", []string{"--listen", "127.0.0.1:0", "--id", strings.Repeat("a", 38)}, []string{"--id"}, false},
		{"listen port in use", []string{"--listen", busyUDP.LocalAddr().String()}, []string{busyUDP.LocalAddr().String(), "address already in use"}, false},
		{"log level unknown", []string{"--listen", "127.0.0.1:0", "--log-level", "loud"}, []string{"--log-level", "loud"}, false},
		{"metrics port in use", []string{"--listen", "127.0.0.1:0", "--metrics-listen", busyTCP.Addr().String()}, []string{"--metrics-listen", "address already in use"}, true},
		{"storage unknown", []string{"--listen", "127.0.0.1:0", "--storage", "tape"}, []string{"--storage", "tape", "disk or memory"}, false},
		{"save interval zero", []string{"--listen", "127.0.0.1:0", "--save-interval", "0s"}, []string{"--save-interval", "positive"}, false},
		{"bep42 mode unknown", []string{"--listen", "127.0.0.1:0", "--bep42", "strict"}, []string{"--bep42", "strict"}, false},
		{"rate limit negative", []string{"--listen", "127.0.0.1:0", "--rate-limit", "-1"}, []string{"--rate-limit", "negative"}, false},
		{"reply budget negative", []string{"--listen", "127.0.0.1:0", "--reply-budget", "-5"}, []string{"--reply-budget", "negative"}, false},
		{"two IPv4 listen addresses", []string{"--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0"}, []string{"--listen", "one per family"}, false},
	}

	// Data directories that cannot be used.
	scratch := t.TempDir()
	aFile := filepath.Join(scratch, "file")
	if err := os.WriteFile(aFile, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbIsDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dbIsDir, "dhtd.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "dhtd.db"), bytes.Repeat([]byte("not a database "), 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	locked := t.TempDir()
	startNode(t, "--no-bootstrap", "--data-dir", locked) // holds the lock while the cases run
	cases = append(cases, []struct {
		name string
		args []string
		want []string
		logs bool
	}{
		{"data dir is a file", []string{"--listen", "127.0.0.1:0", "--data-dir", aFile}, []string{aFile, "not a directory"}, false},
		{"data dir under a file", []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(aFile, "sub")}, []string{aFile, "not a directory"}, false},
		{"database file is a directory", []string{"--listen", "127.0.0.1:0", "--data-dir", dbIsDir}, []string{filepath.Join(dbIsDir, "dhtd.db"), "is a directory"}, false},
		{"database file corrupt, --on-corrupt fail", []string{"--listen", "127.0.0.1:0", "--data-dir", corrupt, "--on-corrupt", "fail"}, []string{filepath.Join(corrupt, "dhtd.db"), "corrupt database"}, false},
		{"on-corrupt unknown", []string{"--listen", "127.0.0.1:0", "--on-corrupt", "ignore"}, []string{"--on-corrupt", "ignore", "salvage or fail"}, false},
		{"data dir locked by a running dhtd", []string{"--listen", "127.0.0.1:0", "--data-dir", locked}, []string{locked, "locked by another process"}, false},
		{"data dir locked, --data-dir=DIR", []string{"--listen", "127.0.0.1:0", "--data-dir=" + locked}, []string{locked, "locked"}, false},
	}...)
	if os.Geteuid() != 0 { // root may write anywhere
		ro := t.TempDir()
		if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		unreadable := t.TempDir()
		if err := os.Chmod(unreadable, 0o000); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(ro, 0o700); _ = os.Chmod(unreadable, 0o700) })
		cases = append(cases, []struct {
			name string
			args []string
			want []string
			logs bool
		}{
			{"data dir not writable", []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(ro, "sub")}, []string{ro, "permission denied"}, false},
			{"data dir unreadable", []string{"--listen", "127.0.0.1:0", "--data-dir", unreadable}, []string{unreadable, "permission denied"}, false},
		}...)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"run", "--no-bootstrap"}
			if !containsArg(c.args, "--metrics-listen") {
				args = append(args, "--metrics-listen", "127.0.0.1:0")
			}
			if !hasStateArg(c.args) {
				args = append(args, "--data-dir", t.TempDir())
			}
			args = append(args, c.args...)
			r := runDhtd(t, args...)
			if r.code == 0 {
				t.Fatalf("dhtd %q: exit 0, want an error\nstderr:\n%s", args, r.stderr)
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if c.logs && strings.HasPrefix(l, "time=") {
					continue // the node's own log lines
				}
				errLines = append(errLines, l)
			}
			if len(errLines) != 1 {
				t.Fatalf("dhtd %q: want exactly one error line on stderr, got %d:\n%s", args, len(errLines), r.stderr)
			}
			line := errLines[0]
			if !strings.HasPrefix(line, "dhtd: ") {
				t.Errorf("error line %q: want it to start with \"dhtd: \"", line)
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(line), strings.ToLower(w)) {
					t.Errorf("error line %q does not mention %q", line, w)
				}
			}
			if strings.TrimSpace(r.stdout) != "" {
				t.Errorf("dhtd %q: unexpected stdout (usage text?):\n%s", args, r.stdout)
			}
		})
	}
}

// hasStateArg reports whether args choose the data dir or the storage.
func hasStateArg(args []string) bool {
	for _, a := range args {
		if a == "--data-dir" || a == "--storage" || strings.HasPrefix(a, "--data-dir=") || strings.HasPrefix(a, "--storage=") {
			return true
		}
	}
	return false
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func TestRunSIGTERM(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	// The node bootstraps from a test socket that never answers. Its first
	// find_node reaching the socket proves the bootstrap goroutine runs, which
	// `run` starts only after installing its signal handler; the SIGTERM then
	// also lands in the middle of a bootstrap lookup.
	boot := silentUDP(t)
	n := startNode(t, "--bootstrap", boot.LocalAddr().String())
	buf := make([]byte, 1500)
	_ = boot.SetReadDeadline(time.Now().Add(e2eWait))
	k, from, err := boot.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no bootstrap query from the node within %v: %v", e2eWait, err)
	}
	if q := bdict(t, buf[:k]); q["y"] != "q" || q["q"] != "find_node" {
		t.Errorf("bootstrap packet %q: want a find_node query", buf[:k])
	}
	if from.String() != n.Addr {
		t.Errorf("bootstrap query came from %s, the node listens on %s", from, n.Addr)
	}

	start := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	const bound = 5 * time.Second
	if !n.exited(bound) {
		t.Fatalf("dhtd still running %v after SIGTERM", bound)
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status after SIGTERM: %v, want 0", n.cmd.ProcessState)
	}
	if !strings.Contains(n.stderr.String(), `msg="shutting down"`) {
		t.Errorf("no \"shutting down\" log line")
	}
}

// TestRunSecondSignal: a second signal during the shutdown ends the
// process at once, by the signal's default action, where the shutdown
// would otherwise wait for the metrics listener's open request (up to its
// bound) and then exit 0.
func TestRunSecondSignal(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	n := startNode(t, "--no-bootstrap")
	// A request whose headers never end keeps its connection active, so
	// the HTTP server's graceful shutdown waits on it.
	conn, err := net.DialTimeout("tcp", n.Metrics, e2eWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: " + n.Metrics + "\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.waitLine(`msg="shutting down"`) // logged once the handler is gone
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !n.exited(e2eWait) {
		t.Fatalf("dhtd still running %v after the second SIGTERM", e2eWait)
	}
	ws, ok := n.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("exit after the second SIGTERM: %v, want killed by SIGTERM", n.cmd.ProcessState)
	}
	if strings.Contains(n.stderr.String(), `msg=stopped`) {
		t.Error("the shutdown ran to its end despite the second signal")
	}
}

// TestRunSIGTERMRightAfterStartup sends SIGTERM as soon as the node logs
// that it is listening: runAction must have its signal handler installed
// before it logs anything, or a signal in that window kills the process
// with the default action instead of a clean exit.
func TestRunSIGTERMRightAfterStartup(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	for i := range 10 {
		n := startNode(t, "--no-bootstrap")
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !n.exited(5 * time.Second) {
			t.Fatalf("run %d: still running 5s after SIGTERM", i)
		}
		if code := n.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("run %d: SIGTERM right after the startup lines: %v, want exit status 0", i, n.cmd.ProcessState)
		}
	}
}

// TestMetricsEndpoint runs a node on a data dir, sends it pings (with
// `dhtd probe`), BEP 44 get and put and get_peers and announce_peer (with a
// test client that answers the node's pings), and checks that the metrics
// of the issue exist and move by what was sent.
func TestMetricsEndpoint(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	n := startNode(t, "--no-bootstrap", "--data-dir", t.TempDir())

	code, body := httpGet(t, n.Metrics, "/healthz")
	if code != http.StatusOK {
		t.Errorf("/healthz: status %d, want 200: %q", code, body)
	}
	type series struct {
		name   string
		labels map[string]string
	}
	var (
		pingsRecv     = &series{"dhtd_queries_received_total", map[string]string{"method": "ping"}}
		getsRecv      = &series{"dhtd_queries_received_total", map[string]string{"method": "get"}}
		putsRecv      = &series{"dhtd_queries_received_total", map[string]string{"method": "put"}}
		getPeersRecv  = &series{"dhtd_queries_received_total", map[string]string{"method": "get_peers"}}
		announcesRecv = &series{"dhtd_queries_received_total", map[string]string{"method": "announce_peer"}}
		queryPackets  = &series{"dhtd_packets_received_total", map[string]string{"kind": "query"}}
		queryBytes    = &series{"dhtd_received_bytes_total", map[string]string{"kind": "query"}}
		replyPackets  = &series{"dhtd_packets_sent_total", map[string]string{"kind": "response"}}
		replyBytes    = &series{"dhtd_sent_bytes_total", map[string]string{"kind": "response"}}
		pingsAnswered = &series{"dhtd_queries_sent_total", map[string]string{"method": "ping", "outcome": "answered"}}
		pingRTTs      = &series{"dhtd_query_rtt_seconds_count", map[string]string{"method": "ping"}}
		tokens        = &series{"dhtd_tokens_issued_total", nil}
		immutable     = &series{"dhtd_storage_items", map[string]string{"kind": "immutable"}}
		peers         = &series{"dhtd_peers_stored", nil}
		dbCommits     = &series{"dhtd_db_commits_total", nil}
		dbWrites      = &series{"dhtd_db_writes_total", nil}
		dbSize        = &series{"dhtd_db_size_bytes", nil}
		dbInFlight    = &series{"dhtd_db_writes_in_flight", nil}
		buildInfo     = &series{"dhtd_build_info", nil}
		goroutines    = &series{"go_goroutines", nil}
	)
	all := []*series{pingsRecv, getsRecv, putsRecv, getPeersRecv, announcesRecv, queryPackets, queryBytes,
		replyPackets, replyBytes, pingsAnswered, pingRTTs, tokens, immutable, peers, dbCommits, dbWrites,
		dbSize, dbInFlight, buildInfo, goroutines}
	scrape := func() map[*series]float64 {
		t.Helper()
		_, body := httpGet(t, n.Metrics, "/metrics")
		out := map[*series]float64{}
		for _, s := range all {
			v, ok := metricValue(t, body, s.name, s.labels)
			if !ok {
				t.Fatalf("/metrics has no %s%v series:\n%s", s.name, s.labels, body)
			}
			out[s] = v
		}
		if !strings.Contains(body, "# TYPE dhtd_queries_received_total counter") {
			t.Errorf("/metrics: dhtd_queries_received_total is not declared a counter")
		}
		return out
	}
	before := scrape()

	const pings = 5
	for i := range pings {
		// Default --bind (any address) on purpose: the path a user takes.
		r := runDhtd(t, "probe", "ping", "--timeout", "5s", n.Addr)
		if r.code != 0 {
			t.Fatalf("probe ping %d: exit %d\nstdout:\n%s\nstderr:\n%s", i, r.code, r.stdout, r.stderr)
		}
	}
	c := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if _, err := c.putImmutable(ctx, n.Addr, []byte("5:hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.announce(ctx, n.Addr, krpcID(0xab), 4242); err != nil {
		t.Fatal(err)
	}
	// Each query got its answer, the node counts a query before it answers,
	// and answers a put or announce only once it is on disk: the counters
	// are already up to date, except the node's own ping of the new client,
	// which happens in the background (no event to await: poll).
	// The sent counters move just after the datagram leaves, so the client
	// may have its answer a moment before: poll for those too.
	after := scrape()
	deadline := time.Now().Add(e2eWait)
	settled := func() bool {
		return after[pingsAnswered] > before[pingsAnswered] && after[replyPackets]-before[replyPackets] >= pings+4
	}
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
		after = scrape()
	}
	delta := func(s *series) float64 { return after[s] - before[s] }
	for _, c := range []struct {
		s    *series
		want float64
	}{
		{pingsRecv, pings}, {getsRecv, 1}, {putsRecv, 1}, {getPeersRecv, 1}, {announcesRecv, 1},
		{tokens, 2}, {immutable, 1}, {peers, 1},
	} {
		if d := delta(c.s); d != c.want {
			t.Errorf("%s%v rose by %v (from %v), want %v", c.s.name, c.s.labels, d, before[c.s], c.want)
		}
	}
	const queries = pings + 4
	for _, s := range []*series{queryPackets, replyPackets} {
		if d := delta(s); d < queries {
			t.Errorf("%s%v rose by %v, want at least %d", s.name, s.labels, d, queries)
		}
	}
	// A KRPC query or reply is at least ~30 bytes.
	for _, s := range []*series{queryBytes, replyBytes} {
		if d := delta(s); d < 30*queries {
			t.Errorf("%s%v rose by %v, want at least %d", s.name, s.labels, d, 30*queries)
		}
	}
	if delta(pingsAnswered) < 1 || delta(pingRTTs) < 1 {
		t.Errorf("the node's pings of its new contacts: answered +%v, RTT observations +%v; want both >= 1",
			delta(pingsAnswered), delta(pingRTTs))
	}
	if delta(dbWrites) < 2 || delta(dbCommits) < 1 || after[dbSize] <= 0 {
		t.Errorf("database: writes +%v, commits +%v, size %v; want >= 2 writes (put and announce), >= 1 commit, size > 0",
			delta(dbWrites), delta(dbCommits), after[dbSize])
	}
	if after[dbInFlight] != 0 || after[buildInfo] != 1 || after[goroutines] <= 0 {
		t.Errorf("db_writes_in_flight %v (want 0), build_info %v (want 1), go_goroutines %v",
			after[dbInFlight], after[buildInfo], after[goroutines])
	}

	code, body = httpGet(t, n.Metrics, "/healthz")
	if code != http.StatusOK {
		t.Errorf("/healthz after the probes: status %d, want 200: %q", code, body)
	}
	// A node alone has no good nodes, so it is not ready (README): the test
	// client in its table is one, the threshold is two.
	if code, body = httpGet(t, n.Metrics, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz of a lone node: status %d %q, want 503", code, body)
	}
	if code, _ = httpGet(t, n.Metrics, "/nonexistent"); code != http.StatusNotFound {
		t.Errorf("/nonexistent: status %d, want 404", code)
	}
}
