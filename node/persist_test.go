package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// persistCtx bounds one test step.
func persistCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// persistPut puts the immutable item v into to from c (get for a token,
// then put) and fails t unless the put is acknowledged.
func persistPut(t *testing.T, c *Node, to netip.AddrPort, v string) krpc.ID {
	t.Helper()
	ctx := persistCtx(t)
	target := storage.ImmutableTarget([]byte(v))
	r, err := c.query(ctx, to, krpc.MethodGet, &krpc.Args{Target: &target})
	if err != nil {
		t.Fatalf("get for a token: %v", err)
	}
	if _, err := c.query(ctx, to, krpc.MethodPut, &krpc.Args{Token: r.R.Token, V: []byte(v)}); err != nil {
		t.Fatalf("put %q: %v", v, err)
	}
	return target
}

// persistAnnounce announces port for ih to to from c.
func persistAnnounce(t *testing.T, c *Node, to netip.AddrPort, ih krpc.ID, port int64) {
	t.Helper()
	ctx := persistCtx(t)
	r, err := c.query(ctx, to, krpc.MethodGetPeers, &krpc.Args{InfoHash: &ih})
	if err != nil {
		t.Fatalf("get_peers for a token: %v", err)
	}
	if _, err := c.query(ctx, to, krpc.MethodAnnouncePeer, &krpc.Args{InfoHash: &ih, Token: r.R.Token, Port: &port}); err != nil {
		t.Fatalf("announce_peer: %v", err)
	}
}

// TestPersistRestart: a node with a data dir keeps its id, its stored
// items and peers and its routing table across Close and New, and rejoins
// through its saved nodes without any bootstrap address.
func TestPersistRestart(t *testing.T) {
	dir := t.TempDir()
	a := startNode(t, nil)
	c := startNode(t, nil)
	cfg := LoopbackConfig()
	cfg.DataDir = dir
	cfg.Bootstrap = []string{a.Addr().String()}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Bootstrap(persistCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.table.Get(a.ID()); !ok {
		t.Fatal("b did not learn a while bootstrapping")
	}
	id := b.ID()
	var targets []krpc.ID
	for _, v := range []string{"3:one", "3:two", "5:three"} {
		targets = append(targets, persistPut(t, c, b.Addr(), v))
	}
	ih := krpc.ID{0xab}
	persistAnnounce(t, c, b.Addr(), ih, 4242)
	if got := testutil.ToFloat64(b.metrics.DBWritesInFlight); got != 0 {
		t.Errorf("dhtd_db_writes_in_flight = %v after every put was acknowledged, want 0", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	cfg = LoopbackConfig()
	cfg.DataDir = dir
	b2, err := New(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { b2.Close() })
	if b2.ID() != id {
		t.Errorf("id after restart %s, want %s", b2.ID(), id)
	}
	if b2.Admin().DataDir() != dir {
		t.Errorf("DataDir() = %q, want %q", b2.Admin().DataDir(), dir)
	}
	now := time.Now()
	for _, tg := range targets {
		if _, ok := b2.items.Get(tg, now); !ok {
			t.Errorf("item %s lost across the restart", tg)
		}
	}
	want := netip.AddrPortFrom(c.Addr().Addr(), 4242)
	if got := b2.peers.Peers(ih, false, 10, now, nil); !slices.Contains(got, want) {
		t.Errorf("peers of %s after restart: %v, want %s", ih, got, want)
	}
	// Bootstrap without any bootstrap address waits for the pings to the
	// saved nodes (the rejoin), which is the event to await.
	if err := b2.Bootstrap(persistCtx(t)); err != nil {
		t.Fatalf("bootstrap through the saved table: %v", err)
	}
	if e, ok := b2.table.Get(a.ID()); !ok || e.Addr != a.Addr() {
		t.Errorf("a is not in the table after the restart: %+v %v", e, ok)
	}
	// And it serves: c gets an item from b2 over the network.
	r, err := c.query(persistCtx(t), b2.Addr(), krpc.MethodGet, &krpc.Args{Target: &targets[0]})
	if err != nil || string(r.R.V) != "3:one" {
		t.Fatalf("get from the restarted node: %v %v", r, err)
	}
	if got := testutil.CollectAndCount(b2.Admin().Registry(), "dhtd_db_commits_total"); got != 1 {
		t.Errorf("dhtd_db_commits_total: %d series, want 1", got)
	}
}

// TestPersistQuotaAcrossRestart: a restored item stays charged to the
// network that put it, so a restart does not reset that network's quota:
// with a quota of 2 items per /24, the network that stored 2 before the
// restart is refused a third after it, and the store counts both under it.
func TestPersistQuotaAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := startNode(t, nil)
	config := func() Config {
		cfg := LoopbackConfig()
		cfg.DataDir = dir
		cfg.LimitLoopback = true // the put comes from 127.0.0.0/24
		cfg.Items.MaxPerSource = 2
		return cfg
	}
	b, err := New(config())
	if err != nil {
		t.Fatal(err)
	}
	persistPut(t, c, b.Addr(), "3:one")
	persistPut(t, c, b.Addr(), "3:two")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := New(config())
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { b2.Close() })
	if st := b2.items.Stats(); st.Sources != 1 || st.TopSource != 2 {
		t.Errorf("after restart: %d source networks, top holds %d; want 1 holding 2", st.Sources, st.TopSource)
	}
	ctx := persistCtx(t)
	v := "5:three"
	target := storage.ImmutableTarget([]byte(v))
	r, err := c.query(ctx, b2.Addr(), krpc.MethodGet, &krpc.Args{Target: &target})
	if err != nil {
		t.Fatalf("get for a token: %v", err)
	}
	_, err = c.query(ctx, b2.Addr(), krpc.MethodPut, &krpc.Args{Token: r.R.Token, V: []byte(v)})
	var ke *krpc.Error
	if !errors.As(err, &ke) || ke.Code != krpc.ErrCodeServer {
		t.Fatalf("third put from the same network after restart: %v, want 202 (over quota)", err)
	}
	if _, ok := b2.items.Get(target, time.Now()); ok {
		t.Error("the put over quota was stored")
	}
}

// TestPersistIDOverride: an explicit Config.ID replaces the saved id.
func TestPersistIDOverride(t *testing.T) {
	dir := t.TempDir()
	n1 := startNode(t, func(c *Config) { c.DataDir = dir })
	first := n1.ID()
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	want := krpc.ID{1, 2, 3}
	n2 := startNode(t, func(c *Config) { c.DataDir = dir; c.ID = want })
	if n2.ID() != want || first == want {
		t.Fatalf("id %s with Config.ID %s", n2.ID(), want)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	n3 := startNode(t, func(c *Config) { c.DataDir = dir })
	if n3.ID() != want {
		t.Fatalf("id %s after restart, want the last one given, %s", n3.ID(), want)
	}
}

// TestPersistLocked: a second node on the same data dir fails to start.
func TestPersistLocked(t *testing.T) {
	dir := t.TempDir()
	startNode(t, func(c *Config) { c.DataDir = dir })
	cfg := LoopbackConfig()
	cfg.DataDir = dir
	n, err := New(cfg)
	if err == nil {
		n.Close()
		t.Fatal("second node on the same data dir started")
	}
	if !errors.Is(err, storage.ErrDBLocked) {
		t.Fatalf("second node: %v, want ErrDBLocked", err)
	}
}

// TestPersistConcurrentPuts: many clients put at once; every acknowledged
// put is in the database after Close, and puts shared commits.
func TestPersistConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	b := startNode(t, func(c *Config) { c.DataDir = dir })
	const clients, per = 8, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []krpc.ID
	for i := range clients {
		c := startNode(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				v := []byte{'2', ':', byte('a' + i), byte('a' + j)}
				target := storage.ImmutableTarget(v)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := c.query(ctx, b.Addr(), krpc.MethodGet, &krpc.Args{Target: &target})
				if err == nil {
					_, err = c.query(ctx, b.Addr(), krpc.MethodPut, &krpc.Args{Token: r.R.Token, V: v})
				}
				cancel()
				if err != nil {
					t.Errorf("put: %v", err)
					continue
				}
				mu.Lock()
				acked = append(acked, target)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st := b.db.Stats()
	t.Logf("%d durable writes in %d commits", st.Writes, st.Commits)
	db := closeAndOpenDB(t, b, dir)
	have := map[krpc.ID]bool{}
	if err := db.LoadItems(func(it storage.Item, _ netip.Addr, _ time.Time) { have[it.Target()] = true }); err != nil {
		t.Fatal(err)
	}
	for _, tg := range acked {
		if !have[tg] {
			t.Errorf("acknowledged put %s is not in the database", tg)
		}
	}
	if len(acked) != clients*per {
		t.Errorf("%d puts acknowledged, want %d", len(acked), clients*per)
	}
}

// TestPersistBusyAndDBError: with every pending-write slot taken, a put is
// refused at once with 202 and counted; when the database write fails, the
// put is answered 202 and counted, not acknowledged.
func TestPersistBusyAndDBError(t *testing.T) {
	b := startNode(t, func(c *Config) { c.DataDir = t.TempDir(); c.MaxPendingWrites = 1 })
	c := startNode(t, nil)
	put := func(v string) error {
		ctx := persistCtx(t)
		target := storage.ImmutableTarget([]byte(v))
		r, err := c.query(ctx, b.Addr(), krpc.MethodGet, &krpc.Args{Target: &target})
		if err != nil {
			t.Fatalf("get for a token: %v", err)
		}
		_, err = c.query(ctx, b.Addr(), krpc.MethodPut, &krpc.Args{Token: r.R.Token, V: []byte(v)})
		return err
	}
	want202 := func(err error, msg string) {
		t.Helper()
		var ke *krpc.Error
		if !errors.As(err, &ke) || ke.Code != krpc.ErrCodeServer || ke.Msg != msg {
			t.Fatalf("put: %v, want [202 %q]", err, msg)
		}
	}
	rejected := func(reason string) float64 {
		return testutil.ToFloat64(b.metrics.StorageRejections.WithLabelValues("immutable", reason))
	}

	b.writeSlots <- struct{}{} // the only slot
	want202(put("4:busy"), "server busy")
	if got := rejected("busy"); got != 1 {
		t.Errorf("rejections{reason=busy} = %v, want 1", got)
	}
	<-b.writeSlots
	if err := put("4:free"); err != nil {
		t.Fatalf("put with a free slot: %v", err)
	}

	if err := b.db.Close(); err != nil { // every later write fails
		t.Fatal(err)
	}
	want202(put("4:fail"), "storage error")
	if got := rejected("db_error"); got != 1 {
		t.Errorf("rejections{reason=db_error} = %v, want 1", got)
	}
}

// TestPersistRefusedAnnounceNotWritten: an announce the full peer store
// refuses is not written to the database.
func TestPersistRefusedAnnounceNotWritten(t *testing.T) {
	dir := t.TempDir()
	b := startNode(t, func(c *Config) {
		c.DataDir = dir
		c.Peers.MaxInfohashes = 1 // one infohash only
	})
	c := startNode(t, nil)
	self := b.ID()
	near, far := self, self
	near[19] ^= 1 // closest to our id
	far[0] ^= 0x80
	persistAnnounce(t, c, b.Addr(), near, 1000)
	persistAnnounce(t, c, b.Addr(), far, 2000) // refused: near is closer
	db := closeAndOpenDB(t, b, dir)
	var got []krpc.ID
	if err := db.LoadPeers(func(ih krpc.ID, _ netip.AddrPort, _ bool, _ time.Time) { got = append(got, ih) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []krpc.ID{near}) {
		t.Fatalf("saved infohashes %v, want only %s", got, near)
	}
}

// TestPersistPeriodic: every SaveInterval the running node saves its table
// and deletes expired records from the database. Both happen on a timer
// with no event to await, so the test polls with a deadline.
func TestPersistPeriodic(t *testing.T) {
	b := startNode(t, func(c *Config) {
		c.DataDir = t.TempDir()
		c.SaveInterval = 50 * time.Millisecond
		c.Items.TTL = 300 * time.Millisecond
	})
	c := startNode(t, nil)
	target := persistPut(t, c, b.Addr(), "7:expires")
	stored := func() bool {
		found := false
		if err := b.db.LoadItems(func(it storage.Item, _ netip.Addr, _ time.Time) { found = found || it.Target() == target }); err != nil {
			t.Fatal(err)
		}
		return found
	}
	if !stored() {
		t.Fatal("acknowledged put is not in the database")
	}
	waitFor(t, 10*time.Second, func() bool { return !stored() })
	waitFor(t, 10*time.Second, func() bool {
		nodes, err := b.db.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(nodes, func(n krpc.NodeInfo) bool { return n.ID == c.ID() && n.Addr == c.Addr() })
	})
}

// closeAndOpenDB closes n, whose data dir is dir, and opens its database
// for the test to read what it left; the test's cleanup closes it.
func closeAndOpenDB(t *testing.T, n *Node, dir string) *storage.DB {
	t.Helper()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := storage.OpenDB(dir + "/" + DBFileName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
