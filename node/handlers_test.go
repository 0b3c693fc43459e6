package node

import (
	"crypto/ed25519"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// hqLateBound bounds the wait for an answer sent after a durable write.
const hqLateBound = 10 * time.Second

// hqWriter is the krpc.ResponseWriter of handleQuery called without a
// server: it keeps the first answer. One made by Detach hands its answer
// over late instead.
type hqWriter struct {
	from     netip.AddrPort
	answered bool
	reply    *krpc.Msg
	detached *hqWriter
	late     chan *krpc.Msg // set on a writer made by Detach
}

func (w *hqWriter) RemoteAddr() netip.AddrPort { return w.from }

func (w *hqWriter) Reply(r *krpc.Return) { w.keep(&krpc.Msg{R: r}) }

func (w *hqWriter) Error(code int64, msg string) {
	w.keep(&krpc.Msg{E: &krpc.Error{Code: code, Msg: msg}})
}

func (w *hqWriter) keep(m *krpc.Msg) {
	if w.answered {
		return
	}
	w.answered = true
	if w.late != nil {
		w.late <- m
		return
	}
	w.reply = m
}

func (w *hqWriter) Detach() krpc.ResponseWriter {
	d := &hqWriter{from: w.from, answered: w.answered, late: make(chan *krpc.Msg, 1)}
	w.answered, w.detached = true, d
	return d
}

// hqAnswer hands q from from to handleQuery and returns its answer, nil if
// it gave none. An answer sent after the handler returned (a durable
// write's) is awaited.
func hqAnswer(t testing.TB, n *Node, from netip.AddrPort, q *krpc.Msg) *krpc.Msg {
	t.Helper()
	w := &hqWriter{from: from}
	// As the driver runs it, under its lock: a querier the table would
	// take is scheduled for a confirmation ping on the core.
	n.srv.Do(func(cn *core.Node, _ time.Time) { n.serve(cn, w, q) })
	if w.detached == nil {
		return w.reply
	}
	select {
	case m := <-w.detached.late:
		return m
	case <-time.After(hqLateBound):
		t.Fatalf("%s: detached, but no answer within %v", q.Q, hqLateBound)
		return nil
	}
}

// hqSource is a raw UDP socket that plays the querier in handler
// tests: handleQuery is called directly with its address as the source, so
// the pings a node sends to confirm a new sender land on a socket we own.
func hqSource(t testing.TB) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// hqQuery builds a decoded query, as the server hands it to handleQuery.
func hqQuery(method string, a *krpc.Args) *krpc.Msg {
	return &krpc.Msg{T: "aa", Y: krpc.KindQuery, Q: method, A: a}
}

// hqID returns an id whose bytes are s padded with '.' to 20.
func hqID(s string) krpc.ID {
	var id krpc.ID
	copy(id[:], s+strings.Repeat(".", krpc.IDLen))
	return id
}

func hqRandomID(rnd *rand.Rand) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(rnd.UintN(256))
	}
	return id
}

// hqPopulate offers count random IPv4 nodes to n's table as having answered.
func hqPopulate(n *Node, count int, rnd *rand.Rand) {
	now := time.Now()
	for i := range count {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 6881)
		n.table.Responded(krpc.NodeInfo{ID: hqRandomID(rnd), Addr: addr}, now, 0)
	}
}

// hqClosest sorts every live node of the table by distance to target.
func hqClosest(n *Node, target krpc.ID, k int) []krpc.NodeInfo {
	all := n.table.Nodes()
	slices.SortFunc(all, func(a, b krpc.NodeInfo) int { return routing.CompareDistance(target, a.ID, b.ID) })
	return all[:min(k, len(all))]
}

// hqCheckReply asserts what holds for every reply: exactly one of R and E,
// our id in R, and a reply the server can encode.
func hqCheckReply(t testing.TB, n *Node, q, reply *krpc.Msg) {
	t.Helper()
	if reply == nil {
		t.Fatalf("%s: no reply", q.Q)
	}
	if (reply.R == nil) == (reply.E == nil) {
		t.Fatalf("%s: reply has R=%v E=%v, want exactly one", q.Q, reply.R, reply.E)
	}
	if reply.R != nil && reply.R.ID != n.ID() {
		t.Errorf("%s: reply id %s, want ours %s", q.Q, reply.R.ID, n.ID())
	}
	out := *reply
	out.T, out.Y = q.T, krpc.KindResponse
	if reply.E != nil {
		out.Y = krpc.KindError
	}
	if _, err := krpc.Encode(&out); err != nil {
		t.Errorf("%s: reply does not encode: %v", q.Q, err)
	}
}

func hqWantError(t testing.TB, reply *krpc.Msg, code int64) {
	t.Helper()
	if reply.E == nil {
		t.Fatalf("reply %+v, want error %d", reply.R, code)
	}
	if reply.E.Code != code {
		t.Fatalf("error [%d %q], want code %d", reply.E.Code, reply.E.Msg, code)
	}
}

func hqWantNodes(t testing.TB, got, want []krpc.NodeInfo) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("test table is empty")
	}
	if !slices.Equal(got, want) {
		t.Fatalf("nodes:\n got %v\nwant %v", got, want)
	}
}

// TestHandleQuery drives handleQuery directly with every method against a
// table of 200 random nodes; node lists must be exactly the K closest the
// table holds (brute force), closest first.
func TestHandleQuery(t *testing.T) {
	n := startNode(t, nil)
	rnd := rand.New(rand.NewPCG(3, 4))
	hqPopulate(n, 200, rnd)
	if n.table.Len() < 2*n.cfg.K {
		t.Fatalf("table holds only %d nodes", n.table.Len())
	}
	_, src := hqSource(t)
	sender := hqID("sender")
	target := hqRandomID(rnd)
	member := n.table.Nodes()[n.table.Len()/2].ID // a node of the table
	k := n.cfg.K
	ptr := func(id krpc.ID) *krpc.ID { return &id }

	cases := []struct {
		name   string
		method string
		args   krpc.Args
		check  func(t *testing.T, r *krpc.Msg)
	}{
		{"ping", krpc.MethodPing, krpc.Args{}, func(t *testing.T, r *krpc.Msg) {
			if r.R == nil || len(r.R.Nodes) != 0 || r.R.Token != "" {
				t.Fatalf("ping reply %+v, want just our id", r.R)
			}
		}},
		{"find_node random target", krpc.MethodFindNode, krpc.Args{Target: ptr(target)}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, target, k))
			if len(r.R.Nodes) != k || len(r.R.Nodes6) != 0 || r.R.Token != "" {
				t.Fatalf("%d nodes, %d nodes6, token %q", len(r.R.Nodes), len(r.R.Nodes6), r.R.Token)
			}
		}},
		{"find_node own id", krpc.MethodFindNode, krpc.Args{Target: ptr(n.ID())}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, n.ID(), k))
		}},
		{"find_node a known node", krpc.MethodFindNode, krpc.Args{Target: ptr(member)}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, member, k))
			if r.R.Nodes[0].ID != member {
				t.Fatalf("first node %s, want the target itself", r.R.Nodes[0].ID)
			}
		}},
		{"find_node want n4 n6", krpc.MethodFindNode, krpc.Args{Target: ptr(target), Want: []string{"n4", "n6", "x9"}}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, target, k))
		}},
		{"find_node want n6 only", krpc.MethodFindNode, krpc.Args{Target: ptr(target), Want: []string{"n6"}}, func(t *testing.T, r *krpc.Msg) {
			if len(r.R.Nodes) != 0 || len(r.R.Nodes6) != 0 {
				t.Fatalf("want=n6 on an IPv4-only table: %d nodes, %d nodes6", len(r.R.Nodes), len(r.R.Nodes6))
			}
		}},
		{"find_node without target", krpc.MethodFindNode, krpc.Args{}, func(t *testing.T, r *krpc.Msg) {
			hqWantError(t, r, krpc.ErrCodeProtocol)
		}},
		{"unknown method with target", "frobnicate", krpc.Args{Target: ptr(target)}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, target, k))
		}},
		{"unknown method with info_hash", "frobnicate", krpc.Args{InfoHash: ptr(member)}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, member, k))
		}},
		{"sample_infohashes", krpc.MethodSampleInfohashes, krpc.Args{Target: ptr(target)}, func(t *testing.T, r *krpc.Msg) {
			hqWantNodes(t, r.R.Nodes, hqClosest(n, target, k))
		}},
		{"unknown method without target", "frobnicate", krpc.Args{}, func(t *testing.T, r *krpc.Msg) {
			hqWantError(t, r, krpc.ErrCodeMethodUnknown)
		}},
		{"get_peers without info_hash", krpc.MethodGetPeers, krpc.Args{Target: ptr(target)}, func(t *testing.T, r *krpc.Msg) {
			hqWantError(t, r, krpc.ErrCodeProtocol)
		}},
		{"get_peers", krpc.MethodGetPeers, krpc.Args{InfoHash: ptr(target)}, func(t *testing.T, r *krpc.Msg) {
			if len(r.R.Token) != storage.TokenLen {
				t.Fatalf("token %q, want %d bytes", r.R.Token, storage.TokenLen)
			}
			hqWantNodes(t, r.R.Nodes, hqClosest(n, target, k))
			if len(r.R.Values) != 0 {
				t.Fatalf("values %v for an infohash nobody announced", r.R.Values)
			}
		}},
		{"get without target", krpc.MethodGet, krpc.Args{}, func(t *testing.T, r *krpc.Msg) {
			hqWantError(t, r, krpc.ErrCodeProtocol)
		}},
		{"get", krpc.MethodGet, krpc.Args{Target: ptr(target)}, func(t *testing.T, r *krpc.Msg) {
			if len(r.R.Token) != storage.TokenLen || len(r.R.V) != 0 || r.R.Seq != nil {
				t.Fatalf("get of an absent item: %+v", r.R)
			}
			hqWantNodes(t, r.R.Nodes, hqClosest(n, target, k))
		}},
		{"put without v", krpc.MethodPut, krpc.Args{Token: "12345678"}, func(t *testing.T, r *krpc.Msg) {
			hqWantError(t, r, krpc.ErrCodeProtocol)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := c.args
			a.ID = sender
			q := hqQuery(c.method, &a)
			r := hqAnswer(t, n, src, q)
			hqCheckReply(t, n, q, r)
			c.check(t, r)
		})
	}
}

// TestHandleAnnouncePeer: announce_peer is refused with 203 unless it
// carries a token this node gave the sender's IP for that infohash and a
// port in 1..65535 (or implied_port); an accepted announce shows up in
// get_peers "values", at the given port or at the UDP source port.
func TestHandleAnnouncePeer(t *testing.T) {
	n := startNode(t, nil)
	_, src := hqSource(t)
	otherIP := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), src.Port())
	ih := hqID("infohash")
	otherIH := hqID("other infohash")
	sender := hqID("announcer")
	getPeers := func(from netip.AddrPort, ih krpc.ID) *krpc.Return {
		t.Helper()
		q := hqQuery(krpc.MethodGetPeers, &krpc.Args{ID: sender, InfoHash: &ih})
		r := hqAnswer(t, n, from, q)
		hqCheckReply(t, n, q, r)
		if r.R == nil {
			t.Fatalf("get_peers: %+v", r.E)
		}
		return r.R
	}
	token := getPeers(src, ih).Token
	otherToken := getPeers(src, otherIH).Token
	if token == otherToken {
		t.Fatal("one token for two infohashes")
	}
	i64 := func(v int64) *int64 { return &v }

	rejects := []struct {
		name string
		from netip.AddrPort
		args krpc.Args
	}{
		{"missing info_hash", src, krpc.Args{Port: i64(6881), Token: token}},
		{"missing token", src, krpc.Args{InfoHash: &ih, Port: i64(6881)}},
		{"bad token", src, krpc.Args{InfoHash: &ih, Port: i64(6881), Token: "xxxxxxxx"}},
		{"short token", src, krpc.Args{InfoHash: &ih, Port: i64(6881), Token: token[:4]}},
		{"token of another infohash", src, krpc.Args{InfoHash: &ih, Port: i64(6881), Token: otherToken}},
		{"token of another IP", otherIP, krpc.Args{InfoHash: &ih, Port: i64(6881), Token: token}},
		{"port missing", src, krpc.Args{InfoHash: &ih, Token: token}},
		{"port 0 without implied_port", src, krpc.Args{InfoHash: &ih, Port: i64(0), Token: token}},
		{"port 70000", src, krpc.Args{InfoHash: &ih, Port: i64(70000), Token: token}},
		{"port 65536", src, krpc.Args{InfoHash: &ih, Port: i64(65536), Token: token}},
		{"negative port", src, krpc.Args{InfoHash: &ih, Port: i64(-1), Token: token}},
	}
	for _, c := range rejects {
		t.Run(c.name, func(t *testing.T) {
			a := c.args
			a.ID = sender
			q := hqQuery(krpc.MethodAnnouncePeer, &a)
			r := hqAnswer(t, n, c.from, q)
			hqCheckReply(t, n, q, r)
			hqWantError(t, r, krpc.ErrCodeProtocol)
		})
	}
	if v := getPeers(src, ih).Values; len(v) != 0 {
		t.Fatalf("refused announces stored peers: %v", v)
	}

	accepts := []struct {
		name string
		args krpc.Args
		peer netip.AddrPort
	}{
		{"port", krpc.Args{InfoHash: &ih, Port: i64(6881), Token: token},
			netip.AddrPortFrom(src.Addr(), 6881)},
		{"port 65535", krpc.Args{InfoHash: &ih, Port: i64(65535), Token: token},
			netip.AddrPortFrom(src.Addr(), 65535)},
		{"implied_port ignores port", krpc.Args{InfoHash: &ih, Port: i64(0), ImpliedPort: 1, Token: token},
			src},
	}
	for _, c := range accepts {
		t.Run(c.name, func(t *testing.T) {
			a := c.args
			a.ID = sender
			q := hqQuery(krpc.MethodAnnouncePeer, &a)
			r := hqAnswer(t, n, src, q)
			hqCheckReply(t, n, q, r)
			if r.E != nil {
				t.Fatalf("valid announce refused: %v", r.E)
			}
			// Peers are stored per IP, so the last announce's port wins.
			vals := getPeers(src, ih).Values
			if !slices.Equal(vals, krpc.Peers{c.peer}) {
				t.Fatalf("get_peers values %v, want [%s]", vals, c.peer)
			}
		})
	}
	if v := getPeers(src, otherIH).Values; len(v) != 0 {
		t.Fatalf("announce leaked to another infohash: %v", v)
	}
}

// TestHandlePutGet: BEP 44 through handleQuery: an immutable put with a get
// token is stored and returned by get; mutable puts are checked in the
// order of docs/protocol.md, BEP 44 items (203 token, 205, 206, 207, 301, 302) and get honours
// "seq".
func TestHandlePutGet(t *testing.T) {
	n := startNode(t, nil)
	_, src := hqSource(t)
	sender := hqID("putter")
	do := func(method string, a krpc.Args) *krpc.Msg {
		t.Helper()
		a.ID = sender
		q := hqQuery(method, &a)
		r := hqAnswer(t, n, src, q)
		hqCheckReply(t, n, q, r)
		return r
	}
	tokenFor := func(target krpc.ID) string {
		t.Helper()
		r := do(krpc.MethodGet, krpc.Args{Target: &target})
		if r.R == nil || len(r.R.Token) != storage.TokenLen {
			t.Fatalf("get: %+v", r)
		}
		return r.R.Token
	}

	// Immutable.
	v := []byte("12:Hello World!")
	imm := storage.ImmutableTarget(v)
	if r := do(krpc.MethodPut, krpc.Args{V: v, Token: "xxxxxxxx"}); r.E == nil || r.E.Code != krpc.ErrCodeProtocol {
		t.Fatalf("immutable put with a bad token: %+v", r)
	}
	if r := do(krpc.MethodPut, krpc.Args{V: v, Token: tokenFor(imm)}); r.E != nil {
		t.Fatalf("immutable put: %v", r.E)
	}
	if r := do(krpc.MethodGet, krpc.Args{Target: &imm}); string(r.R.V) != string(v) {
		t.Fatalf("get returned v %q, want %q", r.R.V, v)
	}

	// Mutable.
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	salt := []byte("salt")
	mut := storage.MutableTarget(pub, salt)
	tok := tokenFor(mut)
	i64 := func(v int64) *int64 { return &v }
	put := func(seq int64, v []byte, cas *int64, salt []byte, sig []byte) *krpc.Msg {
		if sig == nil {
			sig = storage.SignMutable(priv, salt, seq, v)
		}
		return do(krpc.MethodPut, krpc.Args{V: v, K: string(pub), Salt: string(salt), Sig: string(sig), Seq: i64(seq), Cas: cas, Token: tok})
	}
	v1, v2 := []byte("5:first"), []byte("6:second")
	steps := []struct {
		name string
		r    func() *krpc.Msg
		code int64 // 0: success
	}{
		{"bad signature", func() *krpc.Msg { return put(1, v1, nil, salt, make([]byte, 64)) }, krpc.ErrCodeInvalidSig},
		{"salt too big", func() *krpc.Msg {
			return put(1, v1, nil, make([]byte, 65), nil)
		}, krpc.ErrCodeSaltTooBig},
		{"v too big", func() *krpc.Msg {
			big := []byte("1001:" + strings.Repeat("x", 1001))
			return put(1, big, nil, salt, nil)
		}, krpc.ErrCodeValueTooBig},
		{"seq 1", func() *krpc.Msg { return put(1, v1, nil, salt, nil) }, 0},
		{"cas mismatch", func() *krpc.Msg { return put(2, v2, i64(7), salt, nil) }, krpc.ErrCodeCASMismatch},
		{"seq 2 with cas", func() *krpc.Msg { return put(2, v2, i64(1), salt, nil) }, 0},
		{"seq less than current", func() *krpc.Msg { return put(1, v1, nil, salt, nil) }, krpc.ErrCodeSeqLessCurrent},
	}
	for _, s := range steps {
		r := s.r()
		switch {
		case s.code == 0 && r.E != nil:
			t.Fatalf("%s: refused: %v", s.name, r.E)
		case s.code != 0 && (r.E == nil || r.E.Code != s.code):
			t.Fatalf("%s: reply %+v / %+v, want error %d", s.name, r.R, r.E, s.code)
		}
	}
	r := do(krpc.MethodGet, krpc.Args{Target: &mut})
	if r.R.Seq == nil || *r.R.Seq != 2 || string(r.R.V) != string(v2) || r.R.K != string(pub) ||
		!storage.VerifyMutable([]byte(r.R.K), salt, *r.R.Seq, r.R.V, []byte(r.R.Sig)) {
		t.Fatalf("get mutable: %+v", r.R)
	}
	r = do(krpc.MethodGet, krpc.Args{Target: &mut, Seq: i64(2)})
	if r.R.Seq == nil || *r.R.Seq != 2 || len(r.R.V) != 0 || r.R.K != "" || r.R.Sig != "" {
		t.Fatalf("get with seq=current must return only seq: %+v", r.R)
	}
}

// TestHandleQueryReadOnlySender (BEP 43): a query with ro=1 does not put
// its sender in the routing table, not even in a replacement cache, and the
// node does not ping it; the same query without ro makes the node note the
// sender and ping it to confirm, and the answer adds it to the table.
func TestHandleQueryReadOnlySender(t *testing.T) {
	n := startNode(t, nil)
	roConn, roAddr := hqSource(t)
	rwConn, rwAddr := hqSource(t)
	roID, rwID := hqID("read-only sender"), hqID("read-write sender")

	q := hqQuery(krpc.MethodPing, &krpc.Args{ID: roID})
	q.RO = 1
	hqCheckReply(t, n, q, hqAnswer(t, n, roAddr, q))
	q = hqQuery(krpc.MethodPing, &krpc.Args{ID: rwID})
	hqCheckReply(t, n, q, hqAnswer(t, n, rwAddr, q))

	inTable := func(id krpc.ID) (live, cached bool) {
		for _, b := range n.table.Snapshot(time.Now()) {
			for _, e := range b.Nodes {
				live = live || e.ID == id.String()
			}
			for _, e := range b.Replacements {
				cached = cached || e.ID == id.String()
			}
		}
		return live, cached
	}
	if live, cached := inTable(roID); live || cached {
		t.Fatalf("ro=1 sender in the table (live %v, cached %v)", live, cached)
	}
	if _, cached := inTable(rwID); !cached {
		t.Fatal("sender without ro not noted in a replacement cache")
	}

	// The read-write sender gets a confirmation ping; answer it.
	buf := make([]byte, 1500)
	if err := rwConn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	sz, from, err := rwConn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no confirmation ping: %v", err)
	}
	var ping krpc.Msg
	if err := krpc.Decode(buf[:sz], &ping); err != nil || ping.Q != krpc.MethodPing {
		t.Fatalf("expected a ping, got %q (%v)", buf[:sz], err)
	}
	resp, err := krpc.Encode(&krpc.Msg{T: ping.T, Y: krpc.KindResponse, R: &krpc.Return{ID: rwID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rwConn.WriteToUDPAddrPort(resp, from); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { _, ok := n.table.Get(rwID); return ok })

	// The read-only sender must get nothing. This waits for an event that
	// must not happen, so it is short; the ping above was sent at the same
	// time, so one to roConn would have had as long to arrive.
	if err := roConn.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if sz, _, err := roConn.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("node sent %q to a read-only sender", buf[:sz])
	}
	if live, cached := inTable(roID); live || cached {
		t.Fatalf("ro=1 sender in the table (live %v, cached %v)", live, cached)
	}
}

// TestHandleQueryReadOnlyNode (BEP 43): a read-only node answers nothing.
func TestHandleQueryReadOnlyNode(t *testing.T) {
	n := startNode(t, func(c *Config) { c.ReadOnly = true })
	_, src := hqSource(t)
	target := hqID("target")
	for _, q := range []*krpc.Msg{
		hqQuery(krpc.MethodPing, &krpc.Args{ID: hqID("a")}),
		hqQuery(krpc.MethodFindNode, &krpc.Args{ID: hqID("a"), Target: &target}),
		hqQuery("frobnicate", &krpc.Args{ID: hqID("a")}),
	} {
		if r := hqAnswer(t, n, src, q); r != nil {
			t.Errorf("read-only node answered %s: %+v", q.Q, r)
		}
	}
	if n.table.Len() != 0 {
		t.Errorf("read-only node learned %d nodes from queries", n.table.Len())
	}
}

// TestHotCountersCoverKinds: every packet kind the transport reports has a
// pre-resolved counter (a missing one would be a nil counter on the read
// path), and they are the same series the registry exposes.
func TestHotCountersCoverKinds(t *testing.T) {
	n := startNode(t, nil)
	for _, k := range krpc.PacketKinds {
		i := kindIndex(k)
		if i < 0 {
			t.Fatalf("packet kind %q has no index", k)
		}
		for name, m := range map[string]*[4]prometheus.Counter{
			"received": &n.hot.recvPkts, "received bytes": &n.hot.recvBytes,
			"sent": &n.hot.sentPkts, "sent bytes": &n.hot.sentBytes,
		} {
			if m[i] == nil {
				t.Fatalf("no %s counter for packet kind %q", name, k)
			}
		}
		// The resolved counter is the registry's series of that kind.
		before := testutil.ToFloat64(n.metrics.PacketsReceived.WithLabelValues(k))
		n.serverEvents().Received(k, 10)
		if got := testutil.ToFloat64(n.metrics.PacketsReceived.WithLabelValues(k)); got != before+1 {
			t.Fatalf("a received %q packet counted %v times", k, got-before)
		}
	}
	for _, meth := range []string{krpc.MethodPing, krpc.MethodFindNode, krpc.MethodGetPeers, krpc.MethodGet, krpc.MethodPut} {
		before := testutil.ToFloat64(n.metrics.QueriesReceived.WithLabelValues(meth))
		n.queryReceived(meth)
		if got := testutil.ToFloat64(n.metrics.QueriesReceived.WithLabelValues(meth)); got != before+1 {
			t.Fatalf("a %s query counted %v times", meth, got-before)
		}
	}
	before := testutil.ToFloat64(n.metrics.QueriesReceived.WithLabelValues("other"))
	n.queryReceived("no_such_method")
	if got := testutil.ToFloat64(n.metrics.QueriesReceived.WithLabelValues("other")); got != before+1 {
		t.Fatalf("unknown method counted %v times under \"other\"", got-before)
	}
}
