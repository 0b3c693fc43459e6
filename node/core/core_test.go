package core

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestNode(id byte, seed uint64, h func(*Node, Query, Writer)) *Node {
	var nid krpc.ID
	nid[0], nid[19] = id, id
	return New(Config{ID: nid, Rand: rand.New(rand.NewPCG(seed, seed)), Handler: h}, t0)
}

func addr(i byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, i}), 6881)
}

// deliver moves every queued packet among nodes (indexed by address)
// until none is left, at time now; it returns how many it moved.
func deliver(t *testing.T, now time.Time, nodes map[netip.AddrPort]*Node) int {
	t.Helper()
	moved := 0
	for range 10000 {
		progress := false
		for from, n := range nodes {
			for {
				tr, ok := n.PollTransmit()
				if !ok {
					break
				}
				progress = true
				moved++
				if dst := nodes[tr.To]; dst != nil {
					dst.HandlePacket(now, from, tr.Data)
				}
			}
		}
		if !progress {
			return moved
		}
	}
	t.Fatal("packets still moving after 10000 rounds")
	return moved
}

// newNetwork returns count nodes at addr(1) to addr(count), the i-th with
// id byte i*step, answering with h (nil: Serve), each bootstrapped from
// the first in turn, and the map deliver moves packets among.
func newNetwork(t *testing.T, count, step byte, h func(*Node, Query, Writer)) (map[netip.AddrPort]*Node, []*Node) {
	t.Helper()
	nodes := map[netip.AddrPort]*Node{}
	var all []*Node
	for i := byte(1); i <= count; i++ {
		n := newTestNode(i*step, uint64(i), h)
		nodes[addr(i)] = n
		all = append(all, n)
	}
	for _, n := range all[1:] {
		n.Bootstrap(t0, []netip.AddrPort{addr(1)}, nil)
		deliver(t, t0, nodes)
	}
	return nodes, all
}

func TestPingAddsResponderToTable(t *testing.T) {
	a, b := newTestNode(1, 1, nil), newTestNode(2, 2, nil)
	nodes := map[netip.AddrPort]*Node{addr(1): a, addr(2): b}
	a.ping(t0, addr(2))
	if moved := deliver(t, t0, nodes); moved < 2 {
		t.Fatalf("%d packets moved, want the ping and its answer", moved)
	}
	if _, ok := a.Table().Get(b.ID()); !ok {
		t.Fatalf("a's table lacks b after b answered a ping")
	}
	if got := a.Stats().Timeouts; got != 0 {
		t.Fatalf("%d timeouts", got)
	}
}

func TestUnansweredQueryTimesOut(t *testing.T) {
	a := newTestNode(1, 1, nil)
	var res *Result
	a.Bootstrap(t0, []netip.AddrPort{addr(9)}, func(r Result) { res = &r })
	if _, ok := a.PollTransmit(); !ok {
		t.Fatal("bootstrap sent nothing")
	}
	for now := t0; res == nil; {
		next, ok := a.NextTimeout()
		if !ok || !next.After(now) {
			t.Fatalf("next timeout %v (ok %v) not after %v", next, ok, now)
		}
		if next.Sub(t0) > time.Minute {
			t.Fatal("lookup still open a minute after its only query")
		}
		now = next
		a.HandleTimeout(now)
		for {
			if _, ok := a.PollTransmit(); !ok {
				break
			}
		}
	}
	if res.Queried == 0 || len(res.Closest) != 0 {
		t.Fatalf("result %+v: want queries sent and nobody found", res)
	}
}

// A handler may detach its Writer and answer after it returned (as after
// a durable write): nothing is sent until it does, and then exactly once;
// the writer it was given answers nothing once detached.
func TestWriterAnswersLater(t *testing.T) {
	var kept, given Writer
	b := newTestNode(2, 2, func(n *Node, q Query, w Writer) {
		if q.Msg.Q == krpc.MethodPing {
			given, kept = w, w.Detach()
			if kept.RemoteAddr() != q.From {
				t.Errorf("detached writer answers %v, want %v", kept.RemoteAddr(), q.From)
			}
			return
		}
		n.Serve(q, w)
	})
	a := newTestNode(1, 1, nil)
	answered := false
	if err := a.sendQuery(t0, addr(2), krpc.MethodPing, &krpc.Args{}, func(_ time.Time, m *krpc.Msg, err error) {
		answered = err == nil && m.R != nil && m.R.ID == b.ID()
	}); err != nil {
		t.Fatal(err)
	}
	nodes := map[netip.AddrPort]*Node{addr(1): a, addr(2): b}
	deliver(t, t0, nodes)
	if kept == nil || answered {
		t.Fatalf("handler kept writer: %v; answered before Reply: %v", kept != nil, answered)
	}
	given.Reply(&krpc.Return{}) // detached: ignored
	if moved := deliver(t, t0.Add(time.Second/2), nodes); moved != 0 || answered {
		t.Fatalf("the writer given to the handler answered after Detach: %d packets", moved)
	}
	kept.Reply(&krpc.Return{})
	kept.Reply(&krpc.Return{}) // a second answer is ignored
	if moved := deliver(t, t0.Add(time.Second), nodes); moved != 1 {
		t.Fatalf("%d packets after the late Reply, want 1", moved)
	}
	if !answered {
		t.Fatal("the late answer did not complete the query")
	}
}

// A lookup on a small fully connected network finds the closest node and
// the item stored with Put.
func TestPutThenGet(t *testing.T) {
	nodes, all := newNetwork(t, 20, 12, nil)
	now := t0
	v := []byte("5:hello")
	stored := -1
	all[5].Put(now, v, func(r StoreResult) { stored = r.Stored })
	deliver(t, now, nodes)
	if stored < 1 {
		t.Fatalf("put stored on %d nodes", stored)
	}
	var holders []*Node
	for _, n := range all {
		if n.HasItem(storageTarget(v), now) {
			holders = append(holders, n)
		}
	}
	if len(holders) != stored {
		t.Errorf("%d nodes hold the item, %d acknowledged the put", len(holders), stored)
	}
	if len(holders) > 0 && holders[0].HasItem(storageTarget(v), now.Add(3*time.Hour)) {
		t.Errorf("item still held three hours after its put (BEP 44, Expiration)")
	}
	var res Result
	all[9].Get(now, storageTarget(v), func(r Result) { res = r })
	// The answers come 70 ms after the queries: the value's time is that.
	deliver(t, now.Add(70*time.Millisecond), nodes)
	if string(res.Value) != string(v) {
		t.Fatalf("get returned %q, want %q", res.Value, v)
	}
	if res.ValueAfter != 70*time.Millisecond || res.Elapsed < res.ValueAfter {
		t.Errorf("value after %v, lookup %v: want 70ms, and no more than the lookup", res.ValueAfter, res.Elapsed)
	}
}

// An announce is found by a later get_peers from another node.
func TestAnnounceThenGetPeers(t *testing.T) {
	nodes, all := newNetwork(t, 20, 12, nil)
	var ih krpc.ID
	ih[3] = 0x42
	stored := -1
	all[4].Announce(t0, ih, 51413, func(r StoreResult) { stored = r.Stored })
	deliver(t, t0, nodes)
	if stored < 1 {
		t.Fatalf("announce stored on %d nodes", stored)
	}
	var res Result
	all[12].GetPeers(t0, ih, func(r Result) { res = r })
	deliver(t, t0.Add(40*time.Millisecond), nodes)
	want := netip.AddrPortFrom(addr(5).Addr(), 51413)
	if !slices.Contains(res.Peers, want) {
		t.Fatalf("get_peers returned %v, want %v among them", res.Peers, want)
	}
	if res.ValueAfter != 40*time.Millisecond {
		t.Errorf("first peers after %v, want 40ms (when the answers came)", res.ValueAfter)
	}
}

// Bootstrap joins as the daemon does: the lookup of our own id, then a
// lookup in each bucket that has room, and only then done.
func TestBootstrapFillsBuckets(t *testing.T) {
	joiner := newTestNode(200, 200, nil)
	var targets []krpc.ID // of the joiner's find_node queries
	record := func(n *Node, q Query, w Writer) {
		if q.Msg.Q == krpc.MethodFindNode && q.Msg.A.ID == joiner.ID() && q.Msg.A.Target != nil {
			targets = append(targets, *q.Msg.A.Target)
		}
		n.Serve(q, w)
	}
	nodes, _ := newNetwork(t, 30, 8, record)
	nodes[addr(200)] = joiner
	fill := joiner.Table().FillTargets(routing.MaxBuckets) // an empty table: its one bucket has room
	if len(fill) != 1 {
		t.Fatalf("empty table: %d fill targets, want 1", len(fill))
	}
	done := 0
	joiner.Bootstrap(t0, []netip.AddrPort{addr(1)}, func(r Result) {
		done++
		if r.Target != joiner.ID() {
			t.Errorf("done with the result of a lookup of %s, want the first, of our id", r.Target)
		}
	})
	deliver(t, t0, nodes)
	if done != 1 {
		t.Fatalf("done called %d times, want once", done)
	}
	others := map[krpc.ID]bool{}
	for _, tg := range targets {
		if tg != joiner.ID() {
			others[tg] = true
		}
	}
	if len(others) == 0 {
		t.Fatalf("the joiner looked up only its own id (%d find_node queries): no bucket was filled", len(targets))
	}
}

// Transaction ids are unique among the queries outstanding and not a
// counter, so an off-path sender cannot guess the next one.
func TestQueryTIDsRandomAndUnique(t *testing.T) {
	a := newTestNode(1, 1, nil)
	var tids []uint16
	for i := range DefaultMaxPending + 50 {
		a.ping(t0, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 6881))
	}
	for {
		tr, ok := a.PollTransmit()
		if !ok {
			break
		}
		var m krpc.Msg
		if err := krpc.Decode(tr.Data, &m); err != nil || len(m.T) != 2 {
			t.Fatalf("query %q: %v", tr.Data, err)
		}
		tids = append(tids, uint16(m.T[0])<<8|uint16(m.T[1]))
	}
	if len(tids) != DefaultMaxPending {
		t.Fatalf("%d queries sent, want %d (the bound on outstanding queries)", len(tids), DefaultMaxPending)
	}
	seen := map[uint16]bool{}
	steps := 0
	for i, id := range tids {
		if seen[id] {
			t.Fatalf("transaction id %d used twice while outstanding", id)
		}
		seen[id] = true
		if i > 0 && id == tids[i-1]+1 {
			steps++
		}
	}
	if steps > 5 {
		t.Errorf("%d of %d transaction ids follow the one before: a counter", steps, len(tids))
	}
}

// A query whose envelope decodes but whose body does not is answered 203
// with its transaction id, as krpc.Server answers it; what has no
// envelope is dropped unanswered (an answer could amplify).
func TestMalformedQuery(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pkt    string
		answer bool
	}{
		{"no arguments", "d1:q4:ping1:t2:aa1:y1:qe", true},
		{"no id", "d1:ade1:q4:ping1:t2:aa1:y1:qe", true},
		{"id too short", "d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", true},
		{"not canonical", "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:q1:t2:aae", true},
		{"not bencode", "hello, world, this is no dict", false},
		{"no transaction id", "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(1, 1, nil)
			n.HandlePacket(t0, addr(2), []byte(tc.pkt))
			tr, ok := n.PollTransmit()
			if !tc.answer {
				if ok {
					t.Fatalf("answered %q", tr.Data)
				}
				if n.Stats().Dropped != 1 {
					t.Fatalf("dropped %d, want 1", n.Stats().Dropped)
				}
				return
			}
			if !ok {
				t.Fatal("no answer")
			}
			var m krpc.Msg
			if err := krpc.Decode(tr.Data, &m); err != nil {
				t.Fatalf("answer %q: %v", tr.Data, err)
			}
			if m.Y != krpc.KindError || m.E == nil || m.E.Code != krpc.ErrCodeProtocol || m.T != "aa" || tr.To != addr(2) {
				t.Fatalf("answer %+v (error %+v) to %v: want error 203 with t \"aa\" to %v", m, m.E, tr.To, addr(2))
			}
			if _, more := n.PollTransmit(); more {
				t.Fatal("more than one answer")
			}
		})
	}
}

// A malformed answer to one of our queries ends the query at once with an
// error wrapping krpc.BodyError, and does not enter the responder into
// the table.
func TestMalformedAnswer(t *testing.T) {
	a := newTestNode(1, 1, nil)
	var got error
	called := 0
	err := a.sendQuery(t0, addr(2), krpc.MethodPing, a.queryArgs(), func(_ time.Time, _ *krpc.Msg, err error) {
		called++
		got = err
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := a.PollTransmit()
	var q krpc.Msg
	if err := krpc.Decode(tr.Data, &q); err != nil {
		t.Fatal(err)
	}
	// A response whose r has no id.
	a.HandlePacket(t0.Add(time.Millisecond), addr(2), []byte("d1:rd1:v2:xxe1:t2:"+q.T+"1:y1:re"))
	var be *krpc.BodyError
	if called != 1 || !errors.As(got, &be) {
		t.Fatalf("callback ran %d times with %v: want once with a krpc.BodyError", called, got)
	}
	if a.Table().Len() != 0 {
		t.Fatalf("table holds %d nodes after a malformed answer", a.Table().Len())
	}
	if a.pending.Len() != 0 {
		t.Fatalf("%d queries still pending", a.pending.Len())
	}
}

// The upkeep pings questionable nodes within its budget: UpkeepPings, or
// with ScalePings as many as the table's size needs (MaxFailures pings of
// each within the good window). With Refresh set, the stale buckets'
// targets go to the driver and the node starts no lookup; with a shared
// table and Answered set, the timeout of an upkeep ping is the node's to
// count, for no callback of the driver hears of it.
func TestUpkeepBudgets(t *testing.T) {
	var id krpc.ID
	id[0] = 1
	const nodes = 40
	cases := []struct {
		name           string
		scale, refresh bool
	}{
		{"default", false, false},
		{"scaled", true, false},
		{"refresh by the driver", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table := routing.NewTable(id, routing.Config{})
			var targets []krpc.ID
			cfg := Config{ID: id, Rand: rand.New(rand.NewPCG(1, 1)), Routing: table, ScalePings: tc.scale,
				Answered: func(time.Time, netip.AddrPort, string, *krpc.Msg, time.Duration) {}}
			if tc.refresh {
				cfg.Refresh = func(_ time.Time, ts []krpc.ID) { targets = append(targets, ts...) }
			}
			n := New(cfg, t0)
			ids := map[netip.AddrPort]krpc.ID{}
			for i := range nodes {
				ni := krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 6881)}
				table.Responded(ni, t0, time.Millisecond)
				ids[ni.Addr] = ni.ID
			}
			held := table.Len()
			if held < DefaultUpkeepPings*3 {
				t.Fatalf("table holds %d nodes", held)
			}
			// Every node is questionable 16 minutes on, and the upkeep due.
			now := t0.Add(16 * time.Minute)
			n.HandleTimeout(now)
			pinged := map[netip.AddrPort]bool{}
			lookups := 0
			var m krpc.Msg
			for {
				tr, ok := n.PollTransmit()
				if !ok {
					break
				}
				if err := krpc.Decode(tr.Data, &m); err != nil {
					t.Fatal(err)
				}
				switch m.Q {
				case krpc.MethodPing:
					pinged[tr.To] = true
				case krpc.MethodFindNode:
					lookups++
				}
			}
			want := DefaultUpkeepPings
			if tc.scale {
				// 2 pings of each node within 15 minutes, an upkeep a
				// minute: some 5 for 40 nodes.
				want = max(DefaultUpkeepPings, held*routing.DefaultMaxFailures/15)
			}
			if len(pinged) != want {
				t.Fatalf("%d questionable nodes pinged of %d, want %d", len(pinged), held, want)
			}
			if tc.refresh {
				if lookups != 0 || len(targets) != table.NumBuckets() {
					t.Fatalf("with Refresh: %d find_node sent, %d targets handed over for %d stale buckets", lookups, len(targets), table.NumBuckets())
				}
			} else if lookups == 0 {
				t.Fatal("no refresh lookup started")
			}
			// The pings go unanswered: their timeouts reach the table
			// (a refresh lookup may have asked the node too).
			n.HandleTimeout(now.Add(DefaultQueryTimeout))
			for a := range pinged {
				if e, ok := table.Get(ids[a]); !ok || e.Failures == 0 {
					t.Fatalf("pinged node %v: %d failures in the table (held %v), want its timeout", a, e.Failures, ok)
				}
			}
		})
	}
}

// A driver that keeps its own table (Config.Routing, Config.Answered)
// shares it with the node: the node holds that table, answers go to the
// driver's hook and not to the table, and a timeout is left for the
// driver to count (it learns of it from its query's callback). A node
// with its own table learns of both itself.
func TestSharedTable(t *testing.T) {
	var id krpc.ID
	id[0] = 1
	silent := krpc.NodeInfo{ID: krpc.ID{9}, Addr: addr(9)}
	for _, shared := range []bool{false, true} {
		cfg := Config{ID: id, Rand: rand.New(rand.NewPCG(1, 1))}
		var table *routing.Table
		answered := 0
		if shared {
			table = routing.NewTable(id, routing.Config{})
			cfg.Routing = table
			cfg.Answered = func(time.Time, netip.AddrPort, string, *krpc.Msg, time.Duration) { answered++ }
		}
		a, b := New(cfg, t0), newTestNode(2, 2, nil)
		if shared && a.Table() != table {
			t.Fatal("the node does not hold the table it was given")
		}
		// b answers a ping; the silent node does not.
		if _, err := a.Query(t0, addr(2), krpc.MethodPing, nil, nil); err != nil {
			t.Fatal(err)
		}
		deliver(t, t0, map[netip.AddrPort]*Node{addr(1): a, addr(2): b})
		_, inTable := a.Table().Get(b.ID())
		// (a answers b's confirmation ping of a, and pings b to confirm it
		// in turn: with the hook, that answer goes to the hook as well.)
		if answered > 0 != shared || inTable == shared {
			t.Fatalf("shared %v: Answered ran %d times, answerer in the table %v", shared, answered, inTable)
		}
		a.Table().Responded(silent, t0, time.Millisecond)
		var qerr error
		if _, err := a.Query(t0, silent.Addr, krpc.MethodPing, nil, func(_ time.Time, _ *krpc.Msg, err error) { qerr = err }); err != nil {
			t.Fatal(err)
		}
		next, ok := a.NextTimeout()
		if !ok {
			t.Fatal("no wake-up for the query's timeout")
		}
		a.HandleTimeout(next.Add(DefaultQueryTimeout))
		if !errors.Is(qerr, ErrTimeout) {
			t.Fatalf("shared %v: the query ended with %v, want a timeout", shared, qerr)
		}
		e, _ := a.Table().Get(silent.ID)
		want := 1 // a node with its own table counts the timeout
		if shared {
			want = 0 // the driver does
		}
		if e.Failures != want {
			t.Fatalf("shared %v: %d failures in the table after a timeout, want %d", shared, e.Failures, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a table of another id was taken")
		}
	}()
	New(Config{ID: krpc.ID{2}, Rand: rand.New(rand.NewPCG(1, 1)), Routing: routing.NewTable(id, routing.Config{})}, t0)
}

// A node that a lookup's answers name and that the lookup does not ask
// (it is far from the target) but that falls in our deepest bucket gets a
// confirmation ping once the lookup ends, and its answer admits it
// (AdmitNamed). With NamedBuckets negative nobody is pinged.
func TestLookupAdmitsNamedNodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		named int
		want  bool
	}{{"default", 0, true}, {"off", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var oid krpc.ID
			oid[0], oid[19] = 201, 201
			ours := New(Config{ID: oid, NamedBuckets: tc.named, Rand: rand.New(rand.NewPCG(7, 7))}, t0)
			xid := oid
			xid[19] ^= 1 // shares 159 bits with us: our deepest bucket
			xaddr := addr(250)
			var xgot []string
			x := New(Config{ID: xid, Rand: rand.New(rand.NewPCG(8, 8)), Handler: func(n *Node, q Query, w Writer) {
				xgot = append(xgot, q.Msg.Q)
				n.Serve(q, w)
			}}, t0)
			// Every node names x to us, after the 7 closest it knows.
			name := func(n *Node, q Query, w Writer) {
				if q.Msg.Q != krpc.MethodFindNode || q.Msg.A.ID != oid {
					n.Serve(q, w)
					return
				}
				r := &krpc.Return{ID: n.ID(), Nodes: append(n.Table().Closest(*q.Msg.A.Target, 7), krpc.NodeInfo{ID: xid, Addr: xaddr})}
				w.Reply(r)
			}
			nodes, all := newNetwork(t, 20, 12, name)
			nodes[addr(201)], nodes[xaddr] = ours, x
			for i, n := range all {
				ours.Table().Responded(krpc.NodeInfo{ID: n.ID(), Addr: addr(byte(i + 1))}, t0, 10*time.Millisecond)
			}
			var target krpc.ID // far from x: x is never among the closest
			ended := false
			ours.FindNode(t0, target, func(r Result) {
				ended = true
				if r.Queried == 0 {
					t.Error("the lookup asked nobody")
				}
			})
			deliver(t, t0, nodes)
			if !ended {
				t.Fatal("the lookup did not end")
			}
			e, ok := ours.Table().Get(xid)
			if got := ok && e.Confirmed(); got != tc.want {
				t.Fatalf("x in the table, confirmed: %v, want %v", got, tc.want)
			}
			wantGot := []string(nil)
			if tc.want {
				wantGot = []string{krpc.MethodPing}
			}
			if !slices.Equal(xgot, wantGot) {
				t.Fatalf("x received %v, want %v (a confirmation ping only, never the lookup's query)", xgot, wantGot)
			}
		})
	}
}

// A bucket probe asks the table's closest node about a random id of each
// bucket that has room, Config.BucketProbes times; the nodes its answer
// names get one confirmation ping each, never a query of the probe's
// kind, and the answers admit them.
func TestProbeBuckets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		probes int
		want   int // find_node queries p receives
	}{{"default", 0, DefaultBucketProbes}, {"three", 3, 3}, {"off", -1, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var oid krpc.ID
			oid[0], oid[19] = 0x11, 0x11
			// IsSelf: our own address, which a poisoned answer names
			// under another id, is never pinged.
			selfPings := 0
			ours := New(Config{ID: oid, BucketProbes: tc.probes, Rand: rand.New(rand.NewPCG(3, 3)),
				IsSelf: func(a netip.AddrPort) bool { return a == addr(200) },
				Handler: func(n *Node, q Query, w Writer) {
					if q.Msg.Q == krpc.MethodPing && q.From == addr(200) {
						selfPings++
					}
					n.Serve(q, w)
				}}, t0)
			nodes := map[netip.AddrPort]*Node{addr(200): ours}
			// The named: 8 nodes, each answering and recording what it
			// receives, each in a /24 of its own (the admission schedule
			// pings one node of a /24 at a time).
			got := map[krpc.ID][]string{}
			var named []krpc.NodeInfo
			for i := range byte(8) {
				n := newTestNode(0x80+i, uint64(10+i), func(n *Node, q Query, w Writer) {
					got[n.ID()] = append(got[n.ID()], q.Msg.Q)
					n.Serve(q, w)
				})
				a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1 + i, 0, 1}), 6881)
				nodes[a] = n
				named = append(named, krpc.NodeInfo{ID: n.ID(), Addr: a})
			}
			// p, the only node we know, names them in every answer.
			var targets []krpc.ID
			p := newTestNode(0x40, 9, func(n *Node, q Query, w Writer) {
				if q.Msg.Q != krpc.MethodFindNode {
					n.Serve(q, w)
					return
				}
				targets = append(targets, *q.Msg.A.Target)
				fake := krpc.NodeInfo{ID: krpc.ID{0xee, 19: 0xee}, Addr: addr(200)}
				w.Reply(&krpc.Return{ID: n.ID(), Nodes: append(slices.Clone(named), fake)})
			})
			nodes[addr(1)] = p
			ours.Table().Responded(krpc.NodeInfo{ID: p.ID(), Addr: addr(1)}, t0, 10*time.Millisecond)
			room := len(ours.Table().FillTargets(ours.Table().NumBuckets()))
			if room != 1 {
				t.Fatalf("%d buckets with room, want the one", room)
			}
			if sent := ours.ProbeBuckets(t0); sent != tc.want {
				t.Fatalf("ProbeBuckets sent %d, want %d", sent, tc.want)
			}
			deliver(t, t0, nodes)
			if len(targets) != tc.want {
				t.Fatalf("p received %d find_node queries, want %d", len(targets), tc.want)
			}
			if selfPings != 0 {
				t.Errorf("we pinged our own address %d times", selfPings)
			}
			if tc.want > 1 && targets[0] == targets[1] {
				t.Errorf("the probes asked about the same id %x twice", targets[0])
			}
			for _, ni := range named {
				e, ok := ours.Table().Get(ni.ID)
				admitted := ok && e.Confirmed()
				if admitted != (tc.want > 0) {
					t.Errorf("named node %x confirmed in the table: %v, want %v", ni.ID[:1], admitted, tc.want > 0)
				}
				want := []string(nil)
				if tc.want > 0 {
					want = []string{krpc.MethodPing}
				}
				if !slices.Equal(got[ni.ID], want) {
					t.Errorf("named node %x received %v, want %v", ni.ID[:1], got[ni.ID], want)
				}
			}
		})
	}
}
