package main

// dhtd run as a service: state kept in --data-dir across a SIGTERM restart
// and a SIGKILL crash, the DHTD_* environment, the default data dir under
// XDG_STATE_HOME, and `dhtd table`. Everything stays on 127.0.0.1.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// testClient is a KRPC endpoint the test owns, on 127.0.0.1: it sends
// queries and answers pings (so the node under test can confirm it).
type testClient struct {
	srv *krpc.Server
	id  krpc.ID
}

func newTestClient(t *testing.T) *testClient {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{id: krpc.RandomID()}
	c.srv = krpc.NewServer(pc, krpc.HandlerFunc(func(w krpc.ResponseWriter, q *krpc.Msg) {
		if q.Q == krpc.MethodPing {
			w.Reply(&krpc.Return{ID: c.id})
		}
	}), krpc.ServerConfig{QueryTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = c.srv.Close() })
	return c
}

func krpcID(b byte) krpc.ID { return krpc.ID{b, 0xd7, 0x7d} }

func (c *testClient) query(ctx context.Context, addr, method string, a *krpc.Args) (*krpc.Msg, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	a.ID = c.id
	return c.srv.Query(ctx, ap, method, a)
}

// putImmutable stores the bencoded value v at addr (get for a token, then
// put) and returns its target once the node acknowledged the put.
func (c *testClient) putImmutable(ctx context.Context, addr string, v []byte) (krpc.ID, error) {
	target := storage.ImmutableTarget(v)
	r, err := c.query(ctx, addr, krpc.MethodGet, &krpc.Args{Target: &target})
	if err != nil {
		return target, fmt.Errorf("get %s for a token: %w", target, err)
	}
	if _, err := c.query(ctx, addr, krpc.MethodPut, &krpc.Args{Token: r.R.Token, V: v}); err != nil {
		return target, fmt.Errorf("put %s: %w", target, err)
	}
	return target, nil
}

// putMutable stores a signed mutable item at addr and returns its target.
func (c *testClient) putMutable(ctx context.Context, addr string, priv ed25519.PrivateKey, salt string, seq int64, v []byte) (krpc.ID, error) {
	k := priv.Public().(ed25519.PublicKey)
	target := storage.MutableTarget(k, []byte(salt))
	r, err := c.query(ctx, addr, krpc.MethodGet, &krpc.Args{Target: &target})
	if err != nil {
		return target, fmt.Errorf("get %s for a token: %w", target, err)
	}
	sig := storage.SignMutable(priv, []byte(salt), seq, v)
	a := &krpc.Args{Token: r.R.Token, V: v, K: string(k), Salt: salt, Sig: string(sig), Seq: &seq}
	if _, err := c.query(ctx, addr, krpc.MethodPut, a); err != nil {
		return target, fmt.Errorf("put mutable %s: %w", target, err)
	}
	return target, nil
}

// announce announces port for ih at addr.
func (c *testClient) announce(ctx context.Context, addr string, ih krpc.ID, port int64) error {
	r, err := c.query(ctx, addr, krpc.MethodGetPeers, &krpc.Args{InfoHash: &ih})
	if err != nil {
		return fmt.Errorf("get_peers %s for a token: %w", ih, err)
	}
	if _, err := c.query(ctx, addr, krpc.MethodAnnouncePeer, &krpc.Args{InfoHash: &ih, Token: r.R.Token, Port: &port}); err != nil {
		return fmt.Errorf("announce_peer %s: %w", ih, err)
	}
	return nil
}

// TestRestartKeepsState: a node with a populated table, BEP 44 items and
// peers is stopped with SIGTERM and started again on the same data dir with
// a bootstrap router that never answers. It keeps its id, rejoins through
// its saved table, serves every item and peer, and answers lookups.
func TestRestartKeepsState(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	a := startNode(t, "--no-bootstrap")
	b := startNode(t, "--bootstrap", a.Addr)
	a.waitKnows(t, b)
	dir := t.TempDir()
	x := startNode(t, "--bootstrap", a.Addr, "--data-dir", dir)
	x.waitKnows(t, a)
	x.waitKnows(t, b)

	ctx, cancel := context.WithTimeout(context.Background(), 2*e2eWait)
	defer cancel()
	c := newTestClient(t)
	items := map[krpc.ID]string{}
	for _, v := range []string{"3:one", "3:two", "li1ei2ee", "d1:ai1ee"} {
		target, err := c.putImmutable(ctx, x.Addr, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		items[target] = v
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	mutTarget, err := c.putMutable(ctx, x.Addr, priv, "salt", 7, []byte("7:mutable"))
	if err != nil {
		t.Fatal(err)
	}
	ih1, ih2 := krpcID(1), krpcID(2)
	for _, an := range []struct {
		ih   krpc.ID
		port int64
	}{{ih1, 1111}, {ih2, 2222}} {
		if err := c.announce(ctx, x.Addr, an.ih, an.port); err != nil {
			t.Fatal(err)
		}
	}

	if err := x.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !x.exited(5 * time.Second) {
		t.Fatal("still running 5s after SIGTERM")
	}
	if code := x.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status after SIGTERM: %v, want 0", x.cmd.ProcessState)
	}

	router := silentUDP(t) // a bootstrap router that never answers
	x2 := startNode(t, "--bootstrap", router.LocalAddr().String(), "--data-dir", dir)
	if x2.ID != x.ID {
		t.Errorf("id after restart %s, want %s", x2.ID, x.ID)
	}
	loaded := x2.waitLine(`msg="state loaded"`)
	if !strings.Contains(loaded, "items=5") || !strings.Contains(loaded, "peers=2") {
		t.Errorf("state loaded line %q: want items=5 peers=2", loaded)
	}
	x2.waitKnows(t, a)
	x2.waitKnows(t, b)

	for target, v := range items {
		r, err := c.query(ctx, x2.Addr, krpc.MethodGet, &krpc.Args{Target: &target})
		if err != nil {
			t.Fatalf("get %s after restart: %v", target, err)
		}
		if string(r.R.V) != v {
			t.Errorf("get %s after restart: v %q, want %q", target, r.R.V, v)
		}
	}
	r, err := c.query(ctx, x2.Addr, krpc.MethodGet, &krpc.Args{Target: &mutTarget})
	if err != nil {
		t.Fatal(err)
	}
	if r.R.Seq == nil || *r.R.Seq != 7 || string(r.R.V) != "7:mutable" ||
		!ed25519.Verify(priv.Public().(ed25519.PublicKey), storage.SignBuffer([]byte("salt"), 7, r.R.V), []byte(r.R.Sig)) {
		t.Errorf("mutable item after restart: seq %v v %q (sig valid: want)", r.R.Seq, r.R.V)
	}
	cAddr := c.srv.LocalAddr()
	for _, an := range []struct {
		ih   krpc.ID
		port uint16
	}{{ih1, 1111}, {ih2, 2222}} {
		r, err := c.query(ctx, x2.Addr, krpc.MethodGetPeers, &krpc.Args{InfoHash: &an.ih})
		if err != nil {
			t.Fatal(err)
		}
		if want := netip.AddrPortFrom(cAddr.Addr(), an.port); !slices.Contains(r.R.Values, want) {
			t.Errorf("get_peers %s after restart: values %v, want %s", an.ih, r.R.Values, want)
		}
	}

	// Lookups: a find_node for b's id returns b, and a `dhtd peers` style
	// iterative lookup is not needed: the table answers.
	bID, err := krpc.ParseID(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err = c.query(ctx, x2.Addr, krpc.MethodFindNode, &krpc.Args{Target: &bID})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, nd := range r.R.Nodes {
		if nd.ID == bID && nd.Addr.String() == b.Addr {
			found = true
		}
	}
	if !found {
		t.Errorf("find_node %s on the restarted node: nodes %v, want b", b.ID, r.R.Nodes)
	}

	// dhtd table reads the same table over the admin listener.
	res := runDhtd(t, "table", "--admin", x2.Metrics)
	if res.code != 0 {
		t.Fatalf("dhtd table: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.HasPrefix(res.stdout, "node "+x2.ID+" at "+x2.Addr) || !strings.Contains(res.stdout, a.ID) || !strings.Contains(res.stdout, b.ID) {
		t.Errorf("dhtd table output does not show the node and both neighbours:\n%s", res.stdout)
	}
	res = runDhtd(t, "table", "--admin", x2.Metrics, "--json")
	var dump routingDump
	if err := json.Unmarshal([]byte(res.stdout), &dump); res.code != 0 || err != nil || dump.ID != x2.ID {
		t.Errorf("dhtd table --json: exit %d, %v, id %q\n%s", res.code, err, dump.ID, res.stdout)
	}
	if res := runDhtd(t, "table", "--admin", router.LocalAddr().String(), "--timeout", "1s"); res.code == 0 {
		t.Errorf("dhtd table against a UDP-only address: exit 0")
	}
}

// TestCrashKeepsAcknowledgedPuts kills a node with SIGKILL while clients
// put items as fast as they can; after a restart on the same data dir,
// every put the node acknowledged before the kill is served.
func TestCrashKeepsAcknowledgedPuts(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	dir := t.TempDir()
	n := startNode(t, "--no-bootstrap", "--data-dir", dir)

	const (
		workers  = 8
		minAcked = 200 // acknowledged puts before the kill
	)
	var (
		mu        sync.Mutex
		acked     = map[krpc.ID]string{}
		enough    = make(chan struct{})
		closeOnce sync.Once
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*e2eWait)
	defer cancel()
	for w := range workers {
		c := newTestClient(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				s := fmt.Sprintf("w%d-i%d", w, i)
				v := fmt.Sprintf("%d:%s", len(s), s)
				qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
				target, err := c.putImmutable(qctx, n.Addr, []byte(v))
				qcancel()
				if err != nil {
					return // the node is gone (or the test is over)
				}
				mu.Lock()
				acked[target] = v
				if len(acked) >= minAcked {
					closeOnce.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatalf("fewer than %d puts acknowledged within the deadline", minAcked)
	}
	if err := n.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !n.exited(5 * time.Second) {
		t.Fatal("still running 5s after SIGKILL")
	}
	wg.Wait() // every worker's last put failed: nothing is acknowledged after the kill
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d puts acknowledged before SIGKILL", len(acked))

	n2 := startNode(t, "--no-bootstrap", "--data-dir", dir)
	n2.waitLine(`msg="state loaded"`)
	c := newTestClient(t)
	qctx, qcancel := context.WithTimeout(context.Background(), 4*e2eWait)
	defer qcancel()
	lost := 0
	for target, v := range acked {
		r, err := c.query(qctx, n2.Addr, krpc.MethodGet, &krpc.Args{Target: &target})
		if err != nil {
			t.Fatalf("get %s after the crash: %v", target, err)
		}
		if string(r.R.V) != v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged put %s (%q) lost in the crash: got v %q", target, v, r.R.V)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged puts lost", lost, len(acked))
	}
}

// TestRunEnvironment: every run flag has a DHTD_* variable, shown in
// `dhtd run --help`; DHTD_DATA_DIR and DHTD_STORAGE take effect, and without
// either the node keeps its state under $XDG_STATE_HOME/dhtd.
func TestRunEnvironment(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	help := runDhtd(t, "run", "--help")
	for _, f := range runCommand().Flags {
		name := f.Names()[0]
		env := "DHTD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if !strings.Contains(help.stdout, env) {
			t.Errorf("dhtd run --help does not mention %s (for --%s):\n%s", env, name, help.stdout)
		}
	}

	// DHTD_DATA_DIR.
	dir := t.TempDir()
	n := startNodeEnv(t, []string{"DHTD_DATA_DIR=" + dir}, "--no-bootstrap")
	if _, err := os.Stat(filepath.Join(dir, "dhtd.db")); err != nil {
		t.Errorf("DHTD_DATA_DIR=%s: no database there: %v", dir, err)
	}
	n.stop()

	// The default: $XDG_STATE_HOME/dhtd.
	state := t.TempDir()
	n = startNodeEnv(t, []string{"XDG_STATE_HOME=" + state}, "--no-bootstrap", "--id", strings.Repeat("ab", 20))
	n.stop()
	if _, err := os.Stat(filepath.Join(state, "dhtd", "dhtd.db")); err != nil {
		t.Errorf("default data dir: no database under XDG_STATE_HOME: %v", err)
	}
	// ... which keeps the id for the next start.
	n = startNodeEnv(t, []string{"XDG_STATE_HOME=" + state}, "--no-bootstrap")
	if n.ID != strings.Repeat("ab", 20) {
		t.Errorf("id after a restart on the default data dir: %s, want the saved %s", n.ID, strings.Repeat("ab", 20))
	}
	n.stop()

	// DHTD_STORAGE=memory: nothing written, and a fresh id each start.
	mem := t.TempDir()
	n = startNodeEnv(t, []string{"DHTD_STORAGE=memory", "DHTD_DATA_DIR=" + mem}, "--no-bootstrap")
	n.waitLine(`storage in memory`)
	n.stop()
	if entries, err := os.ReadDir(mem); err != nil || len(entries) != 0 {
		t.Errorf("DHTD_STORAGE=memory wrote into the data dir: %v %v", entries, err)
	}

	// A bad value from the environment is reported like a bad flag.
	bin := dhtdBinary(t)
	cctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "run", "--no-bootstrap", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	cmd.Env = append(hermeticEnv(), "DHTD_STORAGE=tape")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("DHTD_STORAGE=tape: %v, want a non-zero exit\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "--storage \"tape\"") {
		t.Errorf("DHTD_STORAGE=tape: want one error line naming --storage, got:\n%s", out)
	}
}
