// Package ltnode is test support: it drives a real libtorrent DHT node
// (python3-libtorrent 2.0.8) through testdata/interop/ltnode.py, whose
// JSON-lines protocol and libtorrent's pitfalls are described in
// testdata/interop/NOTES.md.
//
// It must not import package node, so that node's own tests can use it, as
// do the end-to-end tests of cmd/dhtd.
//
// Require skips a test with -short, or when /usr/bin/python3 cannot import
// libtorrent, unless DHTD_REQUIRE_INTEROP=1 is set (CI), in which case a
// missing libtorrent fails the test. DHTD_INTEROP_VERBOSE=1 runs ltnode.py
// with --verbose; its stderr is logged when a test fails.
//
// Keep dead addresses out of libtorrent's view: it waits 15 s for each dead
// node a lookup reaches. Start the libtorrent node after the DHT nodes it will
// know, so that its cleanup (registered last, run first) stops it before them.
package ltnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

const (
	// Python is the interpreter that has python3-libtorrent (Debian's
	// package), not whatever python3 is first on PATH.
	Python = "/usr/bin/python3"
	// Host is the loopback address libtorrent listens on in the interop
	// tests; dhtd nodes use 127.0.0.1.
	Host = "127.0.0.2"
	// scriptRel is ltnode.py's path from the module root.
	scriptRel = "testdata/interop/ltnode.py"
)

// Available reports whether Python can import libtorrent; it runs the check
// once per process.
var Available = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Python, "-c", "import libtorrent").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -c 'import libtorrent': %v: %s", Python, err, bytes.TrimSpace(out))
	}
	return nil
})

// Require skips t with -short or without libtorrent; with
// DHTD_REQUIRE_INTEROP=1 a missing libtorrent is a failure instead.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("libtorrent interop test (-short)")
	}
	if err := Available(); err != nil {
		if os.Getenv("DHTD_REQUIRE_INTEROP") == "1" {
			t.Fatalf("DHTD_REQUIRE_INTEROP=1 but libtorrent is unavailable: %v", err)
		}
		t.Skipf("libtorrent unavailable (set DHTD_REQUIRE_INTEROP=1 to fail instead): %v", err)
	}
}

// scriptPath finds ltnode.py from the working directory (a package directory
// under `go test`) by walking up to the module root.
func scriptPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("ltnode: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, filepath.FromSlash(scriptRel))
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("ltnode: module root %s: %w", dir, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("ltnode: no go.mod above the working directory")
		}
		dir = parent
	}
}

// lockedBuffer collects ltnode.py's stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns at most the last n bytes written.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}

// Node is one ltnode.py process: a libtorrent DHT node.
type Node struct {
	ID      krpc.ID        // its DHT node id (from the ready line)
	Addr    netip.AddrPort // its DHT (UDP) address
	Version string         // libtorrent's version, e.g. "2.0.8.0"

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte   // stdout lines; closed at EOF, once the process was reaped
	status error         // how the process ended (exec.Cmd.Wait), set before lines is closed
	stop   chan struct{} // closed at cleanup: the reader drops further lines
	exited chan struct{} // closed once stdout hit EOF and the process was reaped
	stderr *lockedBuffer

	mu     sync.Mutex // serialises calls
	nextID int
}

// Start starts ltnode.py listening on host:0 and waits (at most 20 s) for
// its ready line. t.Cleanup closes its stdin, and kills it if it has not
// exited 10 s later.
func Start(t testing.TB, ctx context.Context, host string) *Node {
	t.Helper()
	script, err := scriptPath()
	if err != nil {
		t.Fatal(err)
	}
	// faulthandler: a crash inside libtorrent prints the Python stack to
	// stderr, which the "exited" error quotes.
	args := []string{"-X", "faulthandler", script, "--listen", net.JoinHostPort(host, "0")}
	if os.Getenv("DHTD_INTEROP_VERBOSE") == "1" {
		args = append(args, "--verbose")
	}
	l := &Node{
		cmd:    exec.Command(Python, args...),
		lines:  make(chan []byte, 16),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		stderr: &lockedBuffer{},
	}
	l.cmd.Stderr = l.stderr
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatalf("ltnode.py stdin: %v", err)
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("ltnode.py stdout: %v", err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("start ltnode.py: %v", err)
	}
	go func() {
		defer close(l.exited)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				select {
				case l.lines <- line:
				case <-l.stop:
				}
			}
			if err != nil {
				break
			}
		}
		l.status = l.cmd.Wait() // after every read from stdout, as exec requires
		close(l.lines)
	}()
	t.Cleanup(func() {
		_ = l.stdin.Close() // ltnode.py exits at EOF
		close(l.stop)
		select {
		case <-l.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("ltnode.py did not exit within 10s of stdin EOF; killing it")
			_ = l.cmd.Process.Kill()
			select {
			case <-l.exited:
			case <-time.After(5 * time.Second):
				t.Errorf("ltnode.py (pid %d) still not reaped after kill", l.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("ltnode.py stderr (tail):\n%s", l.stderr.tail(16<<10))
		}
	})

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var ready struct {
		Event   string `json:"event"`
		Error   string `json:"error"`
		Port    int    `json:"port"`
		NodeID  string `json:"node_id"`
		Version string `json:"version"`
	}
	select {
	case line, ok := <-l.lines:
		if !ok {
			t.Fatalf("ltnode.py exited before its ready line; stderr:\n%s", l.stderr.tail(4096))
		}
		if err := json.Unmarshal(line, &ready); err != nil {
			t.Fatalf("ltnode.py ready line %q: %v", line, err)
		}
	case <-rctx.Done():
		t.Fatalf("no ready line from ltnode.py: %v; stderr:\n%s", rctx.Err(), l.stderr.tail(4096))
	}
	if ready.Event != "ready" {
		t.Fatalf("ltnode.py did not start: %+v", ready)
	}
	if l.ID, err = krpc.ParseID(ready.NodeID); err != nil {
		t.Fatalf("ltnode.py node id %q: %v", ready.NodeID, err)
	}
	if ready.Port <= 0 || ready.Port > 65535 {
		t.Fatalf("ltnode.py port %d", ready.Port)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		t.Fatalf("ltnode.py host %q: %v", host, err)
	}
	l.Addr = netip.AddrPortFrom(addr, uint16(ready.Port))
	l.Version = ready.Version
	t.Logf("libtorrent %s at %s id %s", l.Version, l.Addr, l.ID)
	return l
}

// Call sends one command and waits for its reply. A reply with "error" is
// returned together with a non-nil error. After a call abandoned through ctx,
// its late reply is recognised by its id and dropped.
func (l *Node) Call(ctx context.Context, cmd map[string]any) (map[string]any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextID++
	id := l.nextID
	c := make(map[string]any, len(cmd)+1)
	for k, v := range cmd {
		c[k] = v
	}
	c["id"] = id
	name, _ := c["cmd"].(string)
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("ltnode %s: encode: %w", name, err)
	}
	if _, err := l.stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("ltnode %s: write: %w", name, err)
	}
	for {
		select {
		case line, ok := <-l.lines:
			if !ok {
				return nil, fmt.Errorf("ltnode %s: ltnode.py exited (%v); stderr:\n%s", name, l.status, l.stderr.tail(4096))
			}
			var r map[string]any
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, fmt.Errorf("ltnode %s: bad reply %q: %w", name, line, err)
			}
			if rid, _ := r["id"].(float64); rid != float64(id) {
				continue // the late reply of an abandoned call
			}
			if e, ok := r["error"]; ok {
				return r, fmt.Errorf("ltnode %s: %v", name, e)
			}
			return r, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("ltnode %s: no reply: %w", name, ctx.Err())
		}
	}
}

// Do runs cmd on l with a bound of d and decodes the reply into T; any
// failure is fatal. It logs the command, its duration and the reply.
func Do[T any](t testing.TB, ctx context.Context, l *Node, d time.Duration, cmd map[string]any) T {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	r, err := l.Call(cctx, cmd)
	if err != nil {
		t.Fatalf("%v (reply %v)", err, r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("ltnode %v: re-encode reply: %v", cmd["cmd"], err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("ltnode %v: decode reply %s: %v", cmd["cmd"], b, err)
	}
	t.Logf("ltnode %-13v %6.0f ms  %.300s", cmd["cmd"], float64(time.Since(start).Microseconds())/1000, b)
	return v
}

// AddNode makes libtorrent add addr (it pings it with a get_peers) and
// waits up to 10 s for addr to answer and enter its table; it reports
// whether it did. The added node does not learn about libtorrent from this
// (NOTES.md): add both ways.
func (l *Node) AddNode(t testing.TB, ctx context.Context, addr netip.AddrPort) bool {
	t.Helper()
	r := Do[AddNodeReply](t, ctx, l, 15*time.Second, map[string]any{
		"cmd": "add_node", "host": addr.Addr().String(), "port": int(addr.Port()),
		"wait": true, "timeout": 10,
	})
	return r.InTable
}

// Routing returns libtorrent's live routing table.
func (l *Node) Routing(t testing.TB, ctx context.Context) RoutingReply {
	t.Helper()
	return Do[RoutingReply](t, ctx, l, 10*time.Second, map[string]any{"cmd": "routing"})
}

// WaitInTable polls libtorrent's table (there is no event for a change)
// until it holds id at addr, failing t after d.
func (l *Node) WaitInTable(t testing.TB, ctx context.Context, id krpc.ID, addr netip.AddrPort, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		rt := l.Routing(t, ctx)
		if rt.Has(id, addr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("libtorrent's table %+v never gained %s@%s within %v", rt.Nodes, id, addr, d)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Events returns (and clears) the announce_peer and queries libtorrent
// received since the last call.
func (l *Node) Events(t testing.TB, ctx context.Context) EventsReply {
	t.Helper()
	return Do[EventsReply](t, ctx, l, 10*time.Second, map[string]any{"cmd": "events"})
}

// Reply shapes (NOTES.md).
type (
	AddNodeReply struct {
		OK      bool `json:"ok"`
		InTable bool `json:"in_table"`
	}
	RoutingReply struct {
		Nodes []struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		} `json:"nodes"`
		Count int `json:"count"`
	}
	GetPeersReply struct {
		Peers      []string         `json:"peers"`
		Queried    []string         `json:"queried"`
		Responded  []string         `json:"responded"`
		Unanswered []string         `json:"unanswered"`
		Errors     []map[string]any `json:"errors"`
		Complete   bool             `json:"complete"`
		ElapsedMS  int              `json:"elapsed_ms"`
	}
	AnnounceReply struct {
		AnnouncedTo []AnnouncedTo `json:"announced_to"`
		Port        int           `json:"port"`
		ElapsedMS   int           `json:"elapsed_ms"`
		Error       string        `json:"error"`
	}
	AnnouncedTo struct {
		Addr        string `json:"addr"`
		Port        int    `json:"port"`
		ImpliedPort int    `json:"implied_port"`
		Reply       any    `json:"reply"` // "r", {"e":[code,msg]} or null
	}
	PutReply struct {
		Target     string `json:"target"`
		NumSuccess int    `json:"num_success"`
		PublicKey  string `json:"public_key"`
		Seq        int64  `json:"seq"`
		Signature  string `json:"signature"`
		ElapsedMS  int    `json:"elapsed_ms"`
	}
	GetReply struct {
		Found         bool    `json:"found"`
		Value         *string `json:"value"`
		ValueHex      string  `json:"value_hex"`
		Repr          string  `json:"repr"`
		Seq           int64   `json:"seq"`
		Signature     string  `json:"signature"`
		Authoritative bool    `json:"authoritative"`
		Complete      bool    `json:"complete"`
		Target        string  `json:"target"`
		ElapsedMS     int     `json:"elapsed_ms"`
	}
	EventsReply struct {
		Announces []AnnounceEvent `json:"announces"`
		Queries   []QueryEvent    `json:"queries"`
	}
	AnnounceEvent struct {
		InfoHash string `json:"info_hash"`
		IP       string `json:"ip"`
		Port     int    `json:"port"`
	}
	QueryEvent struct {
		From string `json:"from"`
		Q    string `json:"q"`
	}
)

// Has reports whether the table holds id at addr.
func (r RoutingReply) Has(id krpc.ID, addr netip.AddrPort) bool {
	for _, n := range r.Nodes {
		if n.ID == id.String() && n.Addr == addr.String() {
			return true
		}
	}
	return false
}
