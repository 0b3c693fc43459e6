package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"golang.org/x/net/ipv4"
)

// loadConfig is what one load run does.
type loadConfig struct {
	Target   netip.AddrPort
	Query    string // ping, find_node, get_peers, get or mix
	Sockets  int
	Sources  int // source addresses 127.0.0.1 .. 127.0.0.N
	Window   int // closed loop: queries outstanding per socket
	Rate     int // open loop: queries per second in total; 0 = closed loop
	Duration time.Duration
	Warmup   time.Duration
	Timeout  time.Duration
	PID      int
	Fill     int  // responders offered to the target's table first
	ReadOnly bool // send ro=1 (BEP 43): the target does not learn the senders
	// Key, when set, is the target or infohash of every query (a stored
	// one: see seed); otherwise each query draws a random one.
	Key *krpc.ID
	// ExpectStored: a get_peers answer must carry peers and a get answer
	// a value.
	ExpectStored bool
	// Echo: the target is an echo server (echo); a query coming back
	// with a pending transaction id is the answer.
	Echo bool
	// PortBase, when set, binds socket i to port PortBase+i, and IDSeed,
	// when set, derives socket i's node id from (IDSeed, i): runs that
	// share both show the target the same queriers, so its table does not
	// fill with the closed sockets of earlier runs.
	PortBase int
	IDSeed   uint64
}

// Result is the outcome of one load run (printed as text or JSON).
type Result struct {
	Target      string  `json:"target"`
	Query       string  `json:"query"`
	Mode        string  `json:"mode"`
	Sockets     int     `json:"sockets"`
	Sources     int     `json:"sources"`
	Window      int     `json:"window,omitempty"`
	Rate        int     `json:"rate,omitempty"`
	Seconds     float64 `json:"seconds"`
	Sent        uint64  `json:"sent"`
	Answered    uint64  `json:"answered"`
	Errors      uint64  `json:"errors"`  // KRPC error replies
	Invalid     uint64  `json:"invalid"` // replies that failed validation
	Lost        uint64  `json:"lost"`    // no answer within the timeout
	LossPct     float64 `json:"loss_pct"`
	AnswersPerS float64 `json:"answers_per_s"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
	ServerCPU   float64 `json:"server_cpu_s,omitempty"`    // CPU time of its threads during the window (procCPU)
	ServerUtil  float64 `json:"server_cpu_util,omitempty"` // ServerCPU / Seconds
	PerCPUSec   float64 `json:"answers_per_cpu_s,omitempty"`
	ServerRSS   int64   `json:"server_rss_kib,omitempty"`
	TargetNodes int     `json:"target_table_sample,omitempty"` // nodes in one find_node answer after fill
	MaxNodes    int     `json:"max_nodes,omitempty"`           // most nodes in one answer
	MaxValues   int     `json:"max_values,omitempty"`          // most peers in one get_peers answer
	MaxBytes    int     `json:"max_answer_bytes,omitempty"`    // largest answer datagram
}

func loadCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "127.0.0.1:6881", "node to load (loopback only)")
	query := fs.String("query", "ping", "ping, find_node, get_peers, get or mix (the four in turn)")
	sockets := fs.Int("sockets", 8, "UDP sockets")
	sources := fs.Int("sources", 4, "source addresses 127.0.0.1..127.0.0.N the sockets are spread over")
	window := fs.Int("window", 8, "closed loop: queries outstanding per socket")
	rate := fs.Int("rate", 0, "open loop: queries per second in total (0: closed loop)")
	duration := fs.Duration("duration", 5*time.Second, "measured time")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before it")
	timeout := fs.Duration("timeout", time.Second, "a query unanswered after this is lost")
	pid := fs.Int("pid", 0, "the server's pid: report answers per server CPU-second and its RSS (/proc)")
	fill := fs.Int("fill", 0, "before the run, offer this many responders (ids spread over the target's buckets) to its routing table")
	portBase := fs.Int("port-base", 0, "bind socket i to port N+i (0: any port); with --id-seed, runs reuse the same queriers")
	idSeed := fs.Uint64("id-seed", 0, "derive socket i's node id from this seed and i (0: random ids)")
	ro := fs.Bool("read-only", false, "send ro=1 (BEP 43), so the target never pings the load sockets")
	key := fs.String("key", "", "40 hex digits: the target or infohash of every query (default: a random one each)")
	expect := fs.Bool("expect-stored", false, "count a get_peers answer without peers or a get answer without v as invalid")
	echo := fs.Bool("echo", false, "the target is `dhtd-bench echo`: an echoed query is its answer")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := loopbackTarget(*target)
	if err != nil {
		return err
	}
	switch *query {
	case krpc.MethodPing, krpc.MethodFindNode, krpc.MethodGetPeers, krpc.MethodGet, "mix":
	default:
		return fmt.Errorf("--query %q: want ping, find_node, get_peers, get or mix", *query)
	}
	if *sockets < 1 || *sources < 1 || *sources > 250 || *window < 1 || *duration <= 0 || *timeout <= 0 {
		return fmt.Errorf("need --sockets >= 1, 1 <= --sources <= 250, --window >= 1, --duration and --timeout > 0")
	}
	cfg := loadConfig{
		Target: ap, Query: *query, Sockets: *sockets, Sources: *sources, Window: *window,
		Rate: *rate, Duration: *duration, Warmup: *warmup, Timeout: *timeout, PID: *pid,
		Fill: *fill, ReadOnly: *ro, ExpectStored: *expect, Echo: *echo,
		PortBase: *portBase, IDSeed: *idSeed,
	}
	if *portBase < 0 || *portBase+*sockets > 65535 {
		return fmt.Errorf("--port-base %d: sockets would not fit under port 65536", *portBase)
	}
	if *key != "" {
		id, err := krpc.ParseID(*key)
		if err != nil {
			return fmt.Errorf("--key %q: %w", *key, err)
		}
		cfg.Key = &id
	}
	res, err := runLoad(context.Background(), cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	printResult(stdout, res)
	return nil
}

func printResult(w io.Writer, r Result) {
	fmt.Fprintf(w, "%s %s %s sockets=%d sources=%d: %.0f answers/s, loss %.3f%% (%d lost, %d errors, %d invalid of %d sent), latency p50 %.0fµs p99 %.0fµs p99.9 %.0fµs",
		r.Target, r.Query, r.Mode, r.Sockets, r.Sources, r.AnswersPerS, r.LossPct, r.Lost, r.Errors, r.Invalid, r.Sent, r.P50us, r.P99us, r.P999us)
	if r.ServerCPU > 0 {
		fmt.Fprintf(w, ", server %.2f CPU-s (%.0f%%), %.0f answers/CPU-s, RSS %.1f MiB", r.ServerCPU, 100*r.ServerUtil, r.PerCPUSec, float64(r.ServerRSS)/1024)
	}
	fmt.Fprintln(w)
}

// loader is one load run's state.
type loader struct {
	cfg     loadConfig
	targets []krpc.ID // random targets and infohashes, drawn in turn
	start   time.Time // measurement window [start, end)
	end     time.Time
}

// sock is one UDP socket with its outstanding queries.
type sock struct {
	l    *loader
	conn *net.UDPConn
	id   krpc.ID
	// tokens is the closed-loop window: one token per query allowed
	// outstanding (bounded by Window).
	tokens chan struct{}

	mu      sync.Mutex
	pending map[uint16]pendingQuery // bounded: Window (closed) or rate*timeout (open)
	nextTID uint16

	// The query template and the rotation of targets, used by the
	// socket's one sending goroutine (prepare, encodeQuery).
	qm  krpc.Msg
	qa  krpc.Args
	seq int

	sent, answered, errs, invalid, lost atomic.Uint64
	lat                                 []time.Duration // answers in the window; only the reader appends
	// Most nodes, peers and bytes in one answer; only the reader writes.
	maxNodes, maxValues, maxBytes int
}

type pendingQuery struct {
	sent     time.Time
	method   string
	measured bool // sent inside the measurement window
}

// maxPendingOpen bounds a socket's outstanding queries in open loop; past
// it a send is skipped and counted lost (the target is saturated).
const maxPendingOpen = 1 << 15

func runLoad(ctx context.Context, cfg loadConfig) (Result, error) {
	l := &loader{cfg: cfg}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	l.targets = make([]krpc.ID, 4096)
	for i := range l.targets {
		l.targets[i] = randomID(rnd)
	}
	res := Result{Target: cfg.Target.String(), Query: cfg.Query, Sockets: cfg.Sockets, Sources: cfg.Sources, Mode: "closed"}
	if cfg.Rate > 0 {
		res.Mode, res.Rate = "open", cfg.Rate
	} else {
		res.Window = cfg.Window
	}
	if cfg.Fill > 0 {
		n, err := fillTable(ctx, cfg.Target, cfg.Fill)
		if err != nil {
			return res, err
		}
		res.TargetNodes = n
	}
	socks := make([]*sock, cfg.Sockets)
	for i := range socks {
		src := netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i%cfg.Sources)})
		port := uint16(0)
		if cfg.PortBase > 0 {
			port = uint16(cfg.PortBase + i)
		}
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, port)))
		if err != nil {
			closeAll(socks)
			return res, fmt.Errorf("load: socket %d on %s: %w", i, src, err)
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		id := randomID(rnd)
		if cfg.IDSeed != 0 {
			id = randomID(rand.New(rand.NewPCG(cfg.IDSeed, uint64(i))))
		}
		s := &sock{l: l, conn: c, id: id, pending: make(map[uint16]pendingQuery), nextTID: uint16(rnd.UintN(1 << 16))}
		s.tokens = make(chan struct{}, cfg.Window)
		for range cfg.Window {
			s.tokens <- struct{}{}
		}
		socks[i] = s
	}
	defer closeAll(socks)

	now := time.Now()
	l.start = now.Add(cfg.Warmup)
	l.end = l.start.Add(cfg.Duration)
	stopSend := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range socks {
		s.prepare(i)
		wg.Add(1)
		go func() { defer wg.Done(); s.sweepLoop(stopSend) }()
		if cfg.Rate > 0 {
			wg.Add(2)
			go func() { defer wg.Done(); s.readLoop() }()
			go func() { defer wg.Done(); s.sendLoop(stopSend) }()
		} else {
			wg.Add(1)
			go func() { defer wg.Done(); s.closedLoop(stopSend) }()
		}
	}
	// CPU and RSS of the server over the measurement window.
	time.Sleep(time.Until(l.start))
	var cpu0 float64
	var err0 error
	if cfg.PID > 0 {
		cpu0, err0 = procCPU(cfg.PID)
	}
	time.Sleep(time.Until(l.end))
	var cpu1 float64
	var err1 error
	if cfg.PID > 0 {
		cpu1, err1 = procCPU(cfg.PID)
		res.ServerRSS, _ = procRSS(cfg.PID)
	}
	close(stopSend)
	// Let the last queries answer or time out, then stop the readers.
	time.Sleep(cfg.Timeout + 100*time.Millisecond)
	for _, s := range socks {
		s.sweep(time.Now().Add(time.Hour)) // whatever is left is lost
		_ = s.conn.Close()
	}
	wg.Wait()

	var lat []time.Duration
	for _, s := range socks {
		res.Sent += s.sent.Load()
		res.Answered += s.answered.Load()
		res.Errors += s.errs.Load()
		res.Invalid += s.invalid.Load()
		res.Lost += s.lost.Load()
		lat = append(lat, s.lat...)
		res.MaxNodes = max(res.MaxNodes, s.maxNodes)
		res.MaxValues = max(res.MaxValues, s.maxValues)
		res.MaxBytes = max(res.MaxBytes, s.maxBytes)
	}
	res.Seconds = cfg.Duration.Seconds()
	res.AnswersPerS = float64(res.Answered) / res.Seconds
	if res.Sent > 0 {
		res.LossPct = 100 * float64(res.Lost) / float64(res.Sent)
	}
	slices.Sort(lat)
	res.P50us, res.P99us, res.P999us = pct(lat, 0.5), pct(lat, 0.99), pct(lat, 0.999)
	if cfg.PID > 0 {
		if err0 != nil || err1 != nil {
			return res, fmt.Errorf("load: server cpu of pid %d: %w", cfg.PID, errors.Join(err0, err1))
		}
		res.ServerCPU = cpu1 - cpu0
		res.ServerUtil = res.ServerCPU / res.Seconds
		if res.ServerCPU > 0 {
			res.PerCPUSec = float64(res.Answered) / res.ServerCPU
		}
	}
	return res, nil
}

func closeAll(socks []*sock) {
	for _, s := range socks {
		if s != nil {
			_ = s.conn.Close()
		}
	}
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(p*float64(len(sorted))))
	return float64(sorted[i]) / float64(time.Microsecond)
}

func randomID(r *rand.Rand) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(r.UintN(256))
	}
	return id
}

// methods is the rotation of --query mix.
var methods = [...]string{krpc.MethodPing, krpc.MethodFindNode, krpc.MethodGetPeers, krpc.MethodGet}

// prepare readies the socket's query template (sendLoop and closedLoop
// encode every query from it).
func (s *sock) prepare(idx int) {
	s.qm = krpc.Msg{Y: krpc.KindQuery, A: &s.qa, V: "BN\x00\x01"}
	if s.l.cfg.ReadOnly {
		s.qm.RO = 1
	}
	s.seq = idx * 7919
}

// encodeQuery registers the socket's next query as pending and appends
// its datagram to buf; false if the pending table is full (the query is
// counted lost and nothing is to be sent).
func (s *sock) encodeQuery(now time.Time, buf []byte) ([]byte, bool) {
	cfg := &s.l.cfg
	method := cfg.Query
	if method == "mix" {
		method = methods[s.seq%len(methods)]
	}
	tgt := &s.l.targets[s.seq%len(s.l.targets)]
	if cfg.Key != nil {
		tgt = cfg.Key
	}
	s.seq++
	s.qa = krpc.Args{ID: s.id}
	switch method {
	case krpc.MethodFindNode, krpc.MethodGet:
		s.qa.Target = tgt
	case krpc.MethodGetPeers:
		s.qa.InfoHash = tgt
	}
	s.qm.Q = method
	s.mu.Lock()
	if len(s.pending) >= maxPendingOpen {
		s.mu.Unlock()
		s.sent.Add(1)
		s.lost.Add(1)
		return buf, false
	}
	tid := s.nextTID
	for {
		if _, busy := s.pending[tid]; !busy {
			break
		}
		tid++
	}
	s.nextTID = tid + 1
	measured := !now.Before(s.l.start) && now.Before(s.l.end)
	s.pending[tid] = pendingQuery{sent: now, method: method, measured: measured}
	s.mu.Unlock()
	var t [2]byte
	binary.BigEndian.PutUint16(t[:], tid)
	s.qm.T = string(t[:])
	buf, err := krpc.AppendEncode(buf, &s.qm)
	if err != nil {
		panic(err) // a query of this tool always encodes
	}
	if measured {
		s.sent.Add(1)
	}
	return buf, true
}

// sendLoop sends queries at Rate/Sockets per second until stop (open
// loop), one datagram per write, paced in 1 ms steps.
func (s *sock) sendLoop(stop <-chan struct{}) {
	cfg := &s.l.cfg
	buf := make([]byte, 0, 256)
	perSock := float64(cfg.Rate) / float64(cfg.Sockets)
	begin := time.Now()
	done := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		due := int(perSock * now.Sub(begin).Seconds())
		for ; done < due; done++ {
			var ok bool
			if buf, ok = s.encodeQuery(now, buf[:0]); ok {
				// A full socket buffer loses the query; the sweeper counts it.
				_, _ = s.conn.WriteToUDPAddrPort(buf, cfg.Target)
			}
		}
	}
}

// loadBatch is the most datagrams closedLoop moves in one recvmmsg or
// sendmmsg.
const loadBatch = 64

// closedLoop is a closed-loop socket's one goroutine. It sends its window
// of queries in one sendmmsg; then each time answers arrive it reads
// them in one recvmmsg and sends as many new queries (the window tokens
// the answers and the sweeper gave back) in one sendmmsg. A query costs
// the tool a fraction of a syscall, so in a closed loop the server, not
// the tool, sets the pace: with one goroutine per direction and one
// syscall per datagram the tool could not keep a server busy (in the
// 16-socket shape it kept dhtd about a third busy), and the server then
// paid a wake-up for nearly every datagram.
func (s *sock) closedLoop(stop <-chan struct{}) {
	cfg := &s.l.cfg
	pc := ipv4.NewPacketConn(s.conn)
	target := net.UDPAddrFromAddrPort(cfg.Target)
	in := make([]ipv4.Message, loadBatch)
	qs := make([]ipv4.Message, loadBatch)
	replies := make([]ipv4.Message, loadBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
		qs[i].Buffers = [][]byte{make([]byte, 0, 256)}
		qs[i].Addr = target
		replies[i].Buffers = [][]byte{make([]byte, 0, 256)}
	}
	var m krpc.Msg
	var armed time.Time
	stopped := false
	for {
		if !stopped {
			select {
			case <-stop:
				stopped = true
			default:
			}
		}
		now := time.Now()
		if !stopped {
			k := 0
		drain:
			for k < loadBatch {
				select {
				case <-s.tokens:
					b, ok := s.encodeQuery(now, qs[k].Buffers[0][:0])
					if ok {
						qs[k].Buffers[0] = b
						k++
					}
				default:
					break drain
				}
			}
			writeAll(pc, qs[:k])
		}
		// Wake at least every 50 ms to send for the tokens the sweeper
		// gives back, and to see stop.
		if now.Sub(armed) > 10*time.Millisecond {
			armed = now
			_ = s.conn.SetReadDeadline(now.Add(50 * time.Millisecond))
		}
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return // closed
		}
		now = time.Now()
		r := 0
		for i := range in[:n] {
			from := krpc.AddrPortOf(in[i].Addr)
			out, reply := s.onPacket(in[i].Buffers[0][:in[i].N], from, now, &m, replies[r].Buffers[0][:0])
			if reply {
				replies[r].Buffers[0] = out
				replies[r].Addr = in[i].Addr
				r++
			}
		}
		writeAll(pc, replies[:r])
	}
}

// writeAll sends msgs with as few sendmmsg calls as the kernel allows; a
// datagram it refuses is dropped (its query is then counted lost).
func writeAll(pc *ipv4.PacketConn, msgs []ipv4.Message) {
	for sent := 0; sent < len(msgs); {
		k, err := pc.WriteBatch(msgs[sent:], 0)
		sent += k
		if err != nil || k == 0 {
			sent++
		}
	}
}

// readLoop reads the answers of an open-loop socket one datagram at a
// time (onPacket checks each).
func (s *sock) readLoop() {
	buf := make([]byte, 4096)
	out := make([]byte, 0, 256)
	var m krpc.Msg
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var reply bool
		if out, reply = s.onPacket(buf[:n], from, time.Now(), &m, out[:0]); reply {
			_, _ = s.conn.WriteToUDPAddrPort(out, from)
		}
	}
}

// onPacket validates a packet that arrived at now: an answer must carry
// the transaction id of a pending query and decode as a response
// (krpc.Decode: a well-formed reply with a 20-byte id); a find_node,
// get_peers or get answer must carry what its method requires. A query
// from the target (its ping of a new sender) is answered: the answer is
// appended to out and reply is true.
func (s *sock) onPacket(pkt []byte, from netip.AddrPort, now time.Time, m *krpc.Msg, out []byte) ([]byte, bool) {
	derr := krpc.Decode(pkt, m)
	if derr == nil && m.Y == krpc.KindQuery && !s.l.cfg.Echo {
		return answerQuery(out, s.id, m), true
	}
	var tid uint16
	okTID := len(m.T) == 2
	if okTID {
		tid = binary.BigEndian.Uint16([]byte(m.T))
	}
	s.mu.Lock()
	p, found := s.pending[tid]
	if found && okTID {
		delete(s.pending, tid)
	}
	s.mu.Unlock()
	if !found || !okTID {
		// Not an answer to a pending query (or a late one already
		// counted lost).
		if p.measured || !okTID {
			s.invalid.Add(1)
		}
		return out, false
	}
	s.release()
	switch {
	case s.l.cfg.Echo && derr == nil && m.Y == krpc.KindQuery:
		if p.measured {
			s.answered.Add(1)
			s.lat = append(s.lat, now.Sub(p.sent))
		}
	case derr != nil && !errors.Is(derr, krpc.ErrDrop) && m.Y == krpc.KindError:
		s.count(p, &s.errs)
	case derr != nil:
		s.count(p, &s.invalid)
	case m.Y == krpc.KindError:
		s.count(p, &s.errs)
	case m.Y != krpc.KindResponse || m.R == nil || m.R.ID.IsZero() || !validFor(p.method, m.R, s.l.cfg.ExpectStored):
		s.count(p, &s.invalid)
	default:
		s.maxNodes = max(s.maxNodes, len(m.R.Nodes)+len(m.R.Nodes6))
		s.maxValues = max(s.maxValues, len(m.R.Values))
		s.maxBytes = max(s.maxBytes, len(pkt))
		if p.measured {
			s.answered.Add(1)
			s.lat = append(s.lat, now.Sub(p.sent))
		}
	}
	return out, false
}

func (s *sock) count(p pendingQuery, c *atomic.Uint64) {
	if p.measured {
		c.Add(1)
	}
}

// release returns a window token (closed loop).
func (s *sock) release() {
	if s.l.cfg.Rate > 0 {
		return
	}
	select {
	case s.tokens <- struct{}{}:
	default:
	}
}

// validFor checks what an answer to method must hold (BEP 5, BEP 44);
// stored: the key queried has peers or a value stored.
func validFor(method string, r *krpc.Return, stored bool) bool {
	switch method {
	case krpc.MethodGetPeers:
		return r.Token != "" && (!stored || len(r.Values) > 0)
	case krpc.MethodGet:
		return r.Token != "" && (!stored || len(r.V) > 0)
	}
	return true
}

// sweepLoop counts queries unanswered after the timeout as lost.
func (s *sock) sweepLoop(stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s.sweep(now)
		}
	}
}

func (s *sock) sweep(now time.Time) {
	deadline := now.Add(-s.l.cfg.Timeout)
	freed := 0
	s.mu.Lock()
	for tid, p := range s.pending {
		if p.sent.Before(deadline) {
			delete(s.pending, tid)
			if p.measured {
				s.lost.Add(1)
			}
			freed++
		}
	}
	s.mu.Unlock()
	for range freed {
		s.release()
	}
}

// answerQuery encodes a minimal, valid answer to a query from the target:
// our id, and a token and no nodes for get_peers and get.
func answerQuery(dst []byte, id krpc.ID, q *krpc.Msg) []byte {
	r := krpc.Msg{T: q.T, Y: krpc.KindResponse, R: &krpc.Return{ID: id}}
	switch q.Q {
	case krpc.MethodGetPeers, krpc.MethodGet:
		r.R.Token = "bench"
	}
	out, err := krpc.AppendEncode(dst[:0], &r)
	if err != nil {
		return dst[:0]
	}
	return out
}

// loopbackTarget parses a --target address; the tool loads loopback
// targets only.
func loopbackTarget(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--target %q: %w", s, err)
	}
	if !ap.Addr().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("--target %s: only loopback targets are allowed", ap)
	}
	return ap, nil
}
