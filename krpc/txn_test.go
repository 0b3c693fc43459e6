package krpc

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// responseTo builds a response with transaction id tid from id.
func responseTo(tid string, id ID) *Msg {
	return &Msg{T: tid, Y: KindResponse, R: &Return{ID: id}}
}

// TestQueryAnswered: the query on the wire carries a fresh 2-byte "t", the
// method, our arguments, "v" and (read-only only) "ro"=1 (BEP 43); the
// answer completes it, passes the response hook first, and is reported as
// answered.
func TestQueryAnswered(t *testing.T) {
	for _, readOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "read-write", true: "read-only"}[readOnly], func(t *testing.T) {
			s, log := newTestServer(t, nil, ServerConfig{ClientVersion: "TS\x00\x02", ReadOnly: readOnly})
			var hooked atomic.Pointer[string]
			s.SetResponseHook(func(from netip.AddrPort, method string, m *Msg, _ time.Duration) {
				h := method + " " + from.String() + " " + m.R.ID.String()
				hooked.Store(&h)
			})
			remote := newRawSocket(t)
			ctx, cancel := context.WithTimeout(context.Background(), testTOut)
			defer cancel()
			res := goQuery(ctx, s, addrOf(remote), MethodFindNode)
			q, from := readMsg(t, remote)
			if from != s.LocalAddr() {
				t.Errorf("query from %s, want %s", from, s.LocalAddr())
			}
			if q.Y != KindQuery || q.Q != MethodFindNode || q.A == nil || q.A.ID != ID([]byte("querier-id-012345678")) {
				t.Errorf("query on the wire: %+v", q)
			}
			if len(q.T) != TIDLen || q.V != "TS\x00\x02" {
				t.Errorf("t = %q, v = %q", q.T, q.V)
			}
			if wantRO := map[bool]int64{true: 1}[readOnly]; q.RO != wantRO {
				t.Errorf("ro = %d, want %d", q.RO, wantRO)
			}
			sendMsg(t, remote, s.LocalAddr(), responseTo(q.T, rawID()))
			r := awaitResult(t, res)
			if r.err != nil || r.m == nil || r.m.R == nil || r.m.R.ID != rawID() {
				t.Fatalf("Query = %+v, %v; want the response", r.m, r.err)
			}
			want := MethodFindNode + " " + addrOf(remote).String() + " " + rawID().String()
			if h := hooked.Load(); h == nil || *h != want {
				t.Errorf("response hook saw %v, want %q", h, want)
			}
			if got := log.nextDone(t); got != OutcomeAnswered {
				t.Errorf("outcome %q, want %q", got, OutcomeAnswered)
			}
			if s.InFlight() != 0 {
				t.Errorf("InFlight = %d after the answer", s.InFlight())
			}
		})
	}
}

// TestResponseFromWrongAddressDropped: a response is matched by "t" AND
// the address the query went to (docs/protocol.md, Transaction ids). The right "t" from another
// socket (same IP, other port) is dropped as wrong_address and leaves the
// query pending; the real answer afterwards completes it.
func TestResponseFromWrongAddressDropped(t *testing.T) {
	s, log := newTestServer(t, nil, ServerConfig{QueryTimeout: time.Minute})
	remote, impostor := newRawSocket(t), newRawSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTOut)
	defer cancel()
	res := goQuery(ctx, s, addrOf(remote), MethodPing)
	q, _ := readMsg(t, remote)

	impostorID := ID([]byte("impostor-id-01234567"))
	sendMsg(t, impostor, s.LocalAddr(), responseTo(q.T, impostorID))
	if got := log.nextDrop(t); got != DropWrongAddress {
		t.Fatalf("impostor's answer dropped as %q, want %q", got, DropWrongAddress)
	}
	// An error reply from the wrong address is no better.
	sendMsg(t, impostor, s.LocalAddr(), &Msg{T: q.T, Y: KindError, E: &Error{Code: 201, Msg: "x"}})
	if got := log.nextDrop(t); got != DropWrongAddress {
		t.Fatalf("impostor's error dropped as %q, want %q", got, DropWrongAddress)
	}
	select {
	case r := <-res:
		t.Fatalf("query completed by the impostor: %+v, %v", r.m, r.err)
	default:
	}
	if s.InFlight() != 1 {
		t.Fatalf("InFlight = %d, want the query still pending", s.InFlight())
	}

	sendMsg(t, remote, s.LocalAddr(), responseTo(q.T, rawID()))
	r := awaitResult(t, res)
	if r.err != nil || r.m.R.ID != rawID() {
		t.Fatalf("Query = %+v, %v; want the real answer", r.m, r.err)
	}
}

// TestResponseUnknownTransactionDropped: responses and errors whose "t"
// belongs to no query we sent are dropped as unknown_transaction,
// whatever the length of "t".
func TestResponseUnknownTransactionDropped(t *testing.T) {
	s, log := newTestServer(t, nil, ServerConfig{})
	remote := newRawSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTOut)
	defer cancel()
	// One real query in flight, so the table of pending ids is not empty.
	res := goQuery(ctx, s, addrOf(remote), MethodPing)
	q, _ := readMsg(t, remote)
	other := string([]byte{q.T[0] ^ 0xff, q.T[1]})
	for _, m := range []*Msg{
		responseTo(other, rawID()),
		{T: other, Y: KindError, E: &Error{Code: 201, Msg: "A Generic Error Ocurred"}},
		responseTo(q.T[:1], rawID()),
		responseTo(q.T+"x", rawID()),
		responseTo("", rawID()),
	} {
		sendMsg(t, remote, s.LocalAddr(), m)
		if got := log.nextDrop(t); got != DropUnknownTransaction {
			t.Errorf("t=%q y=%s: dropped as %q, want %q", m.T, m.Y, got, DropUnknownTransaction)
		}
	}
	sendMsg(t, remote, s.LocalAddr(), responseTo(q.T, rawID()))
	if r := awaitResult(t, res); r.err != nil {
		t.Fatalf("the real answer did not complete the query: %v", r.err)
	}
}

// TestQueryEnds covers the three ways a query ends without an answer: its
// own timeout (ErrTimeout, not before QueryTimeout), a cancelled context
// and a context deadline (the context's error, promptly). In every case the
// transaction is released, and an answer arriving afterwards is dropped as
// late_response.
func TestQueryEnds(t *testing.T) {
	const short = 150 * time.Millisecond
	cases := []struct {
		name         string
		queryTimeout time.Duration
		ctxTimeout   time.Duration
		cancelOnSend bool
		want         error
		outcome      string
	}{
		{"query timeout", short, testTOut, false, ErrTimeout, OutcomeTimeout},
		{"context cancelled", time.Minute, testTOut, true, context.Canceled, OutcomeCancelled},
		{"context deadline", time.Minute, short, false, context.DeadlineExceeded, OutcomeCancelled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, log := newTestServer(t, nil, ServerConfig{QueryTimeout: c.queryTimeout})
			remote := newRawSocket(t)
			ctx, cancel := context.WithTimeout(context.Background(), c.ctxTimeout)
			defer cancel()
			res := goQuery(ctx, s, addrOf(remote), MethodPing)
			q, _ := readMsg(t, remote)
			if c.cancelOnSend {
				cancel()
			}
			r := awaitResult(t, res)
			if !errors.Is(r.err, c.want) {
				t.Fatalf("err = %v, want %v", r.err, c.want)
			}
			if c.want != ErrTimeout && errors.Is(r.err, ErrTimeout) {
				t.Errorf("err = %v also matches ErrTimeout", r.err)
			}
			// Not before its bound: the query's own timeout counts from the
			// query, the context's deadline from the context (made first).
			if dl, _ := ctx.Deadline(); c.want == context.DeadlineExceeded && r.at.Before(dl) {
				t.Errorf("returned at %v, before the context's deadline %v", r.at, dl)
			}
			if c.want == ErrTimeout && r.elapsed < short {
				t.Errorf("returned after %v, before the %v bound", r.elapsed, short)
			}
			if r.elapsed > 2*time.Second {
				t.Errorf("returned after %v, not promptly", r.elapsed)
			}
			if got := log.nextDone(t); got != c.outcome {
				t.Errorf("outcome %q, want %q", got, c.outcome)
			}
			if s.InFlight() != 0 {
				t.Errorf("InFlight = %d after the query ended", s.InFlight())
			}
			sendMsg(t, remote, s.LocalAddr(), responseTo(q.T, rawID()))
			if got := log.nextDrop(t); got != DropLateResponse {
				t.Errorf("late answer dropped as %q, want %q", got, DropLateResponse)
			}
		})
	}
}

// TestQueryKRPCError: an error reply ends the query with a *Error holding
// code and message (errors.As), in list form and in the bare-string form
// anacrolix sends (code 201); a response without a valid r.id ends it with
// a *BodyError.
func TestQueryKRPCError(t *testing.T) {
	cases := []struct {
		name     string
		e        string // bencoded "e" value
		code     int64
		msg      string
		malform  bool   // a response with a bad body instead of an error
		response string // bencoded "r" value when malform
	}{
		{name: "generic", e: "li201e23:A Generic Error Ocurrede", code: 201, msg: "A Generic Error Ocurred"},
		{name: "protocol", e: "li203e13:invalid tokene", code: 203, msg: "invalid token"},
		{name: "method unknown", e: "li204e14:Method Unknowne", code: 204, msg: "Method Unknown"},
		{name: "bep44 cas", e: "li301e12:CAS mismatche", code: 301, msg: "CAS mismatch"},
		{name: "code only", e: "li202ee", code: 202, msg: ""},
		{name: "bare string", e: "13:invalid token", code: 201, msg: "invalid token"},
		{name: "r.id too short", malform: true, response: "d2:id3:abce"},
		{name: "r without id", malform: true, response: "d5:token2:xxe"},
	}
	s, log := newTestServer(t, nil, ServerConfig{QueryTimeout: time.Minute})
	remote := newRawSocket(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTOut)
			defer cancel()
			res := goQuery(ctx, s, addrOf(remote), MethodAnnouncePeer)
			q, _ := readMsg(t, remote)
			pkt := "d1:e" + c.e + "1:t2:" + q.T + "1:y1:ee"
			if c.malform {
				pkt = "d1:r" + c.response + "1:t2:" + q.T + "1:y1:re"
			}
			sendRaw(t, remote, s.LocalAddr(), []byte(pkt))
			r := awaitResult(t, res)
			var ke *Error
			var be *BodyError
			switch {
			case c.malform:
				if !errors.As(r.err, &be) || errors.As(r.err, &ke) {
					t.Fatalf("err = %v, want a *BodyError", r.err)
				}
			case !errors.As(r.err, &ke):
				t.Fatalf("err = %v (%T), want a *krpc.Error", r.err, r.err)
			default:
				if ke.Code != c.code || ke.Msg != c.msg {
					t.Errorf("error [%d %q], want [%d %q]", ke.Code, ke.Msg, c.code, c.msg)
				}
				if r.m == nil || r.m.Y != KindError {
					t.Errorf("message returned with the error: %+v", r.m)
				}
			}
			if errors.Is(r.err, ErrTimeout) {
				t.Errorf("err %v matches ErrTimeout", r.err)
			}
			if got := log.nextDone(t); got != OutcomeError {
				t.Errorf("outcome %q, want %q", got, OutcomeError)
			}
		})
	}
}

// TestTransactionIDsUnique: 500 concurrent queries to one silent socket
// carry 500 distinct 2-byte transaction ids (docs/protocol.md, Transaction ids).
func TestTransactionIDsUnique(t *testing.T) {
	const n = 500
	s, _ := newTestServer(t, nil, ServerConfig{QueryTimeout: time.Minute})
	remote := newRawSocket(t)
	if err := remote.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTOut)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.Query(ctx, addrOf(remote), MethodPing, &Args{ID: rawID()})
			errs <- err
		})
	}
	seen := make(map[string]bool, n)
	for i := range n {
		pkt, _ := readPacket(t, remote, waitLong)
		var m Msg
		if err := Decode(pkt, &m); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if len(m.T) != TIDLen {
			t.Errorf("packet %d: t = %q, want %d bytes", i, m.T, TIDLen)
		}
		if seen[m.T] {
			t.Errorf("packet %d: t = %q reused among in-flight queries", i, m.T)
		}
		seen[m.T] = true
	}
	if got := s.InFlight(); got != n {
		t.Errorf("InFlight = %d, want %d", got, n)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("query ended with %v, want context.Canceled", err)
		}
	}
}

// TestMaxInFlight: with MaxInFlight=4, five queries to a silent socket put
// four packets on the wire; the fifth waits for a slot and is sent only
// after the first query has timed out. The InFlight event never reports
// more than four.
func TestMaxInFlight(t *testing.T) {
	const bound, total = 4, 5
	var timedOut atomic.Int64
	s, log := newTestServer(t, nil, ServerConfig{
		MaxInFlight:  bound,
		QueryTimeout: 300 * time.Millisecond,
		Events: Events{QueryDone: func(_, outcome string, _ time.Duration) {
			if outcome == OutcomeTimeout {
				timedOut.Add(1) // runs before the query releases its slot
			}
		}},
	})
	remote := newRawSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTOut)
	defer cancel()
	var results []<-chan queryResult
	for range total {
		results = append(results, goQuery(ctx, s, addrOf(remote), MethodPing))
	}
	// A packet read while no query has timed out yet was sent before the
	// first timeout; at most bound of them may exist. (A slow reader may
	// see early packets late, which only lowers the count.)
	early := 0
	for range total {
		readPacket(t, remote, waitLong)
		if timedOut.Load() == 0 {
			early++
		}
	}
	if early > bound {
		t.Fatalf("%d packets on the wire before any query timed out, want at most %d", early, bound)
	}
	for i, ch := range results {
		if r := awaitResult(t, ch); !errors.Is(r.err, ErrTimeout) {
			t.Errorf("query %d: err = %v, want ErrTimeout", i, r.err)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.maxFlight > bound {
		t.Errorf("InFlight reached %d, bound %d", log.maxFlight, bound)
	}
}

// TestMaxInFlightSlotRelease: while MaxInFlight queries are pending, the
// next Query blocks (and gives up with its context's error, without
// sending); an answer frees a slot and lets the next query out.
func TestMaxInFlightSlotRelease(t *testing.T) {
	const bound = 4
	s, log := newTestServer(t, nil, ServerConfig{MaxInFlight: bound, QueryTimeout: time.Minute})
	remote := newRawSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTOut)
	defer cancel()
	var results []<-chan queryResult
	var tids []string
	for range bound {
		results = append(results, goQuery(ctx, s, addrOf(remote), MethodPing))
		q, _ := readMsg(t, remote)
		tids = append(tids, q.T)
	}
	// A fifth query with a short deadline never gets a slot.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	r := awaitResult(t, goQuery(short, s, addrOf(remote), MethodPing))
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("blocked query: err = %v, want context.DeadlineExceeded", r.err)
	}
	if got := log.nextDone(t); got != OutcomeCancelled {
		t.Errorf("outcome %q, want %q", got, OutcomeCancelled)
	}
	// A sixth waits; answering the first query lets it out.
	sixth := goQuery(ctx, s, addrOf(remote), MethodPing)
	sendMsg(t, remote, s.LocalAddr(), responseTo(tids[0], rawID()))
	if r := awaitResult(t, results[0]); r.err != nil {
		t.Fatalf("answered query: %v", r.err)
	}
	q, _ := readMsg(t, remote)
	if q.Q != MethodPing {
		t.Fatalf("unexpected packet %+v", q)
	}
	// Exactly one packet was sent for the blocked queries: the sixth's.
	for _, tid := range tids {
		if q.T == tid {
			t.Fatalf("sixth query reused pending t %q", tid)
		}
	}
	sendMsg(t, remote, s.LocalAddr(), responseTo(q.T, rawID()))
	if r := awaitResult(t, sixth); r.err != nil {
		t.Fatalf("sixth query: %v", r.err)
	}
	cancel()
	for _, ch := range results[1:] {
		awaitResult(t, ch)
	}
}

// newTestTable is a Transactions with a fixed seed and a 2 s timeout.
func newTestTable(lateMax int) *Transactions[int] {
	return NewTransactions[int](2*time.Second, rand.New(rand.NewPCG(42, 7)), lateMax)
}

// TestTransactionsExhaustion: the table hands out every one of the 65536
// ids once, then refuses instead of reusing one in flight.
func TestTransactionsExhaustion(t *testing.T) {
	tx := newTestTable(0)
	now := time.Unix(1e9, 0)
	seen := make([]bool, 1<<16)
	for i := range 1 << 16 {
		h, ok := tx.Add(now, netip.AddrPort{}, i)
		if !ok {
			t.Fatalf("add %d failed with ids left", i)
		}
		if seen[h.ID] {
			t.Fatalf("id %d handed out twice", h.ID)
		}
		seen[h.ID] = true
	}
	if _, ok := tx.Add(now, netip.AddrPort{}, 0); ok {
		t.Fatal("add succeeded with every id in flight")
	}
}

// TestTransactionsLateBounded: the memory of timed-out ids is bounded (two
// generations of lateMax), and a late answer is recognised only from the
// address the query went to.
func TestTransactionsLateBounded(t *testing.T) {
	const lateMax = 64
	tx := newTestTable(lateMax)
	now := time.Unix(1e9, 0)
	addr := netip.MustParseAddrPort("192.0.2.1:6881")
	other := netip.MustParseAddrPort("192.0.2.1:6882")
	h, _ := tx.Add(now, addr, 1)
	if v, ok := tx.Remove(h, true); !ok || v != 1 {
		t.Fatalf("remove of a query in flight = %d, %v", v, ok)
	}
	if _, ok := tx.Remove(h, true); ok {
		t.Fatal("second remove succeeded")
	}
	if _, reason := tx.Match(h.TID(), addr); reason != DropLateResponse {
		t.Errorf("late answer: %q, want %q", reason, DropLateResponse)
	}
	if _, reason := tx.Match(h.TID(), other); reason != DropUnknownTransaction {
		t.Errorf("late answer from another port: %q, want %q", reason, DropUnknownTransaction)
	}
	for i := range 5 * lateMax {
		h, _ := tx.Add(now, addr, i)
		tx.Remove(h, true)
		if n := len(tx.late) + len(tx.lateOld); n > 2*lateMax {
			t.Fatalf("%d late ids remembered, bound %d", n, 2*lateMax)
		}
	}
	if tx.Len() != 0 {
		t.Errorf("Len = %d", tx.Len())
	}
	// With lateMax 0 nothing is remembered.
	tx = newTestTable(0)
	h, _ = tx.Add(now, addr, 1)
	tx.Remove(h, true)
	if _, reason := tx.Match(h.TID(), addr); reason != DropUnknownTransaction || tx.late != nil {
		t.Errorf("lateMax 0: %q, late %v", reason, tx.late)
	}
}

// TestTransactionsExpire: queries expire at their deadline, in the order
// added, not before; answered and removed ones never expire; NextDeadline
// follows the earliest query still in flight, and a stale handle (an id
// reused by a later query) removes nothing.
func TestTransactionsExpire(t *testing.T) {
	tx := newTestTable(8)
	t0 := time.Unix(1e9, 0)
	a := netip.MustParseAddrPort("192.0.2.1:1")
	b := netip.MustParseAddrPort("192.0.2.2:2")
	h := make([]TxnHandle, 5)
	for i := range h {
		h[i], _ = tx.Add(t0.Add(time.Duration(i)*100*time.Millisecond), a, i)
	}
	if d, ok := tx.NextDeadline(); !ok || !d.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("NextDeadline = %v, %v", d, ok)
	}
	if v, reason := tx.Match(h[0].TID(), b); reason != DropWrongAddress || v != 0 {
		t.Fatalf("answer from the wrong address: %d, %q", v, reason)
	}
	if v, reason := tx.Match(h[0].TID(), a); reason != "" || v != 0 {
		t.Fatalf("answer: %d, %q", v, reason)
	}
	tx.Remove(h[2], false)
	if d, _ := tx.NextDeadline(); !d.Equal(t0.Add(2100 * time.Millisecond)) {
		t.Errorf("NextDeadline after the first answered = %v", d.Sub(t0))
	}
	if got := tx.Expire(t0.Add(2099*time.Millisecond), nil); len(got) != 0 {
		t.Errorf("expired before the deadline: %v", got)
	}
	if !tx.Busy(a) || tx.Busy(b) {
		t.Errorf("Busy(a) = %v, Busy(b) = %v", tx.Busy(a), tx.Busy(b))
	}
	got := tx.Expire(t0.Add(2300*time.Millisecond), nil)
	if len(got) != 2 || got[0].Value != 1 || got[1].Value != 3 || got[0].To != a {
		t.Fatalf("expired %+v, want 1 and 3", got)
	}
	if _, reason := tx.Match(h[1].TID(), a); reason != DropLateResponse {
		t.Errorf("answer after expiry: %q", reason)
	}
	if tx.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tx.Len())
	}
	if _, ok := tx.Remove(TxnHandle{ID: h[4].ID, seq: h[4].seq + 1}, false); ok {
		t.Error("a stale handle removed a query")
	}
	got = tx.Expire(t0.Add(time.Hour), got[:0])
	if len(got) != 1 || got[0].Value != 4 {
		t.Fatalf("expired %+v, want 4", got)
	}
	if _, ok := tx.NextDeadline(); ok || tx.Len() != 0 || len(tx.order) != 0 {
		t.Errorf("empty table: next ok %v, Len %d, order %d", ok, tx.Len(), len(tx.order))
	}
}

// TestTransactionsOrderBounded: answered queries leave the deadline order
// as it is trimmed, so a long run of answered queries with a few in
// flight keeps it short; a burst's memory is given back once idle.
func TestTransactionsOrderBounded(t *testing.T) {
	tx := newTestTable(0)
	now := time.Unix(1e9, 0)
	a := netip.MustParseAddrPort("192.0.2.1:1")
	var inFlight []TxnHandle
	for i := range 100000 {
		h, _ := tx.Add(now, a, i)
		inFlight = append(inFlight, h)
		if len(inFlight) > 4 {
			tx.Match(inFlight[0].TID(), a)
			inFlight = inFlight[1:]
		}
		if len(tx.order)-tx.head > 5 || len(tx.order) > 80 {
			t.Fatalf("after %d queries: order %d from %d, %d in flight", i, len(tx.order), tx.head, tx.Len())
		}
	}
	for range 1000 {
		tx.Add(now, a, 0)
	}
	tx.All(nil)
	if tx.slots != nil || tx.order != nil || tx.Len() != 0 {
		t.Errorf("after a burst: slots %d, order cap %d", len(tx.slots), cap(tx.order))
	}
}

// modelQuery is a query in flight as checkTxnModel's map keeps it.
type modelQuery struct {
	h  TxnHandle
	to netip.AddrPort
	v  int
}

// checkTxnModel runs the operations ops encodes (two bytes each: the
// operation and its argument) on a Transactions and on a map of the
// queries in flight, and fails t where they differ: the open-addressing
// index must find every query in flight, and only those, whatever the
// order in which its slots were freed.
func checkTxnModel(t *testing.T, seed uint64, ops []byte) {
	tx := NewTransactions[int](2*time.Second, rand.New(rand.NewPCG(seed, 2)), 0)
	model := map[uint16]modelQuery{}
	now := time.Unix(1e9, 0)
	var ids []uint16 // ids once in flight, to answer or remove
	for step := 0; step+1 < len(ops); step += 2 {
		op, arg := ops[step], ops[step+1]
		to := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, arg % 8}), 1)
		pick := func() uint16 {
			if len(ids) == 0 || arg >= 128 {
				return uint16(arg) * 257 // most likely no query
			}
			return ids[int(arg)%len(ids)]
		}
		switch op % 10 {
		case 0, 1, 2, 3, 4:
			if len(model) >= 3000 {
				continue
			}
			h, ok := tx.Add(now, to, step)
			if !ok {
				t.Fatalf("step %d: Add failed with %d in flight", step, len(model))
			}
			if _, dup := model[h.ID]; dup {
				t.Fatalf("step %d: id %d given twice", step, h.ID)
			}
			model[h.ID] = modelQuery{h, to, step}
			ids = append(ids, h.ID)
		case 5, 6:
			id := pick()
			m, inFlight := model[id]
			tid := string([]byte{byte(id >> 8), byte(id)})
			v, reason := tx.Match(tid, to)
			switch {
			case inFlight && m.to == to:
				if reason != "" || v != m.v {
					t.Fatalf("step %d: Match(%d) = %d, %q; want %d", step, id, v, reason, m.v)
				}
				delete(model, id)
			case inFlight:
				if reason != DropWrongAddress {
					t.Fatalf("step %d: Match(%d) from the wrong address: %q", step, id, reason)
				}
			case reason != DropUnknownTransaction:
				t.Fatalf("step %d: Match(%d) of no query: %q", step, id, reason)
			}
		case 7:
			id := pick()
			m, inFlight := model[id]
			if !inFlight {
				continue
			}
			if v, ok := tx.Remove(m.h, false); !ok || v != m.v {
				t.Fatalf("step %d: Remove(%d) = %d, %v", step, id, v, ok)
			}
			if _, ok := tx.Remove(m.h, false); ok {
				t.Fatalf("step %d: Remove(%d) twice", step, id)
			}
			delete(model, id)
		case 8:
			now = now.Add(time.Duration(arg) * 10 * time.Millisecond)
			for _, e := range tx.Expire(now, nil) {
				m, ok := model[e.ID]
				if !ok || m.v != e.Value || m.to != e.To {
					t.Fatalf("step %d: expired %d, not in flight as such", step, e.ID)
				}
				delete(model, e.ID)
			}
		default:
			busy := false
			for _, m := range model {
				busy = busy || m.to == to
			}
			if got := tx.Busy(to); got != busy {
				t.Fatalf("step %d: Busy(%v) = %v", step, to, got)
			}
		}
		if tx.Len() != len(model) {
			t.Fatalf("step %d: Len %d, want %d", step, tx.Len(), len(model))
		}
		if len(ids) > 4096 {
			ids = ids[len(ids)-1024:]
		}
	}
	all := tx.All(nil)
	if len(all) != len(model) {
		t.Fatalf("All gave %d, want %d", len(all), len(model))
	}
	for i := 1; i < len(all); i++ {
		if model[all[i-1].ID].h.seq > model[all[i].ID].h.seq {
			t.Fatal("All not in the order of Add")
		}
	}
	if tx.Len() != 0 {
		t.Fatalf("after All: Len %d", tx.Len())
	}
}

// TestTransactionsModel runs random adds, answers, removals and expiries
// against a map of the queries in flight (checkTxnModel).
func TestTransactionsModel(t *testing.T) {
	for seed := range uint64(20) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		ops := make([]byte, 10000)
		for i := range ops {
			ops[i] = byte(rnd.Uint32())
		}
		checkTxnModel(t, seed, ops)
	}
}

// FuzzTransactions runs checkTxnModel on the fuzzer's operations.
func FuzzTransactions(f *testing.F) {
	f.Add(uint64(1), []byte{0, 1, 0, 2, 0, 3, 5, 0, 5, 1, 7, 2, 8, 250, 9, 1})
	f.Add(uint64(2), []byte{0, 0, 0, 0, 0, 0, 0, 0, 6, 200, 7, 1, 8, 100, 8, 100, 8, 100})
	f.Fuzz(func(t *testing.T, seed uint64, ops []byte) {
		if len(ops) > 1<<14 {
			ops = ops[:1<<14]
		}
		checkTxnModel(t, seed, ops)
	})
}

// manualClock is a Clock whose time moves only when the test says, and
// whose timers fire only when Advance passes them.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	c       *manualClock
	at      time.Time
	f       func()
	stopped bool
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &manualTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return tm
}

func (tm *manualTimer) Stop() bool {
	tm.c.mu.Lock()
	defer tm.c.mu.Unlock()
	was := !tm.stopped
	tm.stopped = true
	return was
}

// armed returns the deadlines of the timers not yet fired or stopped.
func (c *manualClock) armed() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at []time.Time
	for _, tm := range c.timers {
		if !tm.stopped {
			at = append(at, tm.at)
		}
	}
	return at
}

// Advance moves the time by d and runs, in this goroutine, every timer
// that falls due.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*manualTimer
	for _, tm := range c.timers {
		if !tm.stopped && !c.now.Before(tm.at) {
			tm.stopped = true
			due = append(due, tm)
		}
	}
	c.mu.Unlock()
	for _, tm := range due {
		tm.f()
	}
}

// TestQueryTimeoutsOneTimer: the server keeps one timer for all its
// queries, armed for the earliest deadline. A query answered before its
// deadline does not time out; the timer then wakes for the next query in
// flight, which times out at its own deadline and not before.
func TestQueryTimeoutsOneTimer(t *testing.T) {
	clock := &manualClock{now: time.Unix(1e9, 0)}
	s, _ := newTestServer(t, nil, ServerConfig{Clock: clock, QueryTimeout: 2 * time.Second})
	remote := newRawSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTOut)
	defer cancel()
	first := goQuery(ctx, s, addrOf(remote), MethodPing)
	q1, _ := readMsg(t, remote)
	clock.Advance(time.Second)
	second := goQuery(ctx, s, addrOf(remote), MethodPing)
	readMsg(t, remote)
	if at := clock.armed(); len(at) != 1 || !at[0].Equal(time.Unix(1e9+2, 0)) {
		t.Fatalf("timers armed for %v, want one for the first deadline", at)
	}
	sendMsg(t, remote, s.LocalAddr(), responseTo(q1.T, rawID()))
	if r := awaitResult(t, first); r.err != nil {
		t.Fatalf("first query: %v", r.err)
	}
	clock.Advance(time.Second) // the first deadline: nothing is due
	select {
	case r := <-second:
		t.Fatalf("second query ended early: %v", r.err)
	default:
	}
	if at := clock.armed(); len(at) != 1 || !at[0].Equal(time.Unix(1e9+3, 0)) {
		t.Fatalf("timers armed for %v, want one for the second deadline", at)
	}
	clock.Advance(time.Second)
	if r := awaitResult(t, second); !errors.Is(r.err, ErrTimeout) {
		t.Fatalf("second query: %v, want a timeout", r.err)
	}
	if at := clock.armed(); len(at) != 0 || s.InFlight() != 0 {
		t.Errorf("after the last timeout: timers %v, %d in flight", at, s.InFlight())
	}
}

// goResult is what a Go callback received.
type goResult struct {
	m   *Msg
	err error
}

// TestGoCallbacks: Go sends at once and reports through its callback,
// once per query: the answer; a KRPC error reply (*Error, with the
// message); its timeout (ErrTimeout). With MaxInFlight queries out, Go
// fails with ErrOverloaded instead of waiting, and sends nothing. A query
// cancelled before its answer never calls back, frees its slot, and its
// answer is dropped as late; Close ends the rest with ErrClosed.
func TestGoCallbacks(t *testing.T) {
	clock := &manualClock{now: time.Unix(1e9, 0)}
	var sent atomic.Int64 // queries on the wire; Go counts one before it returns
	s, log := newTestServer(t, nil, ServerConfig{Clock: clock, QueryTimeout: 2 * time.Second, MaxInFlight: 3,
		Events: Events{Sent: func(kind string, _ int) {
			if kind == PacketQuery {
				sent.Add(1)
			}
		}}})
	remote := newRawSocket(t)
	results := make(chan goResult, 8)
	callback := func(m *Msg, err error) { results <- goResult{m, err} }
	next := func() goResult {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(testTOut):
			t.Fatal("no callback")
			return goResult{}
		}
	}
	send := func() (Call, *Msg) {
		t.Helper()
		c, err := s.Go(addrOf(remote), MethodPing, &Args{ID: rawID()}, callback)
		if err != nil {
			t.Fatalf("Go: %v", err)
		}
		q, _ := readMsg(t, remote)
		return c, q
	}

	// Answered.
	_, q := send()
	sendMsg(t, remote, s.LocalAddr(), responseTo(q.T, rawID()))
	if r := next(); r.err != nil || r.m == nil || r.m.R.ID != rawID() {
		t.Fatalf("answer: %+v, %v", r.m, r.err)
	}
	if got := log.nextDone(t); got != OutcomeAnswered {
		t.Errorf("outcome %q, want %q", got, OutcomeAnswered)
	}
	// An error reply.
	_, q = send()
	sendMsg(t, remote, s.LocalAddr(), &Msg{T: q.T, Y: KindError, E: &Error{Code: ErrCodeServer, Msg: "busy"}})
	var ke *Error
	if r := next(); !errors.As(r.err, &ke) || ke.Code != ErrCodeServer || ke.Msg != "busy" {
		t.Fatalf("error reply: err = %v, want *Error 202 busy", r.err)
	}
	// Timed out.
	send()
	clock.Advance(2 * time.Second)
	if r := next(); !errors.Is(r.err, ErrTimeout) {
		t.Fatalf("timeout: err = %v, want ErrTimeout", r.err)
	}

	// Three out: a fourth is refused at once, unsent.
	var calls []Call
	var tids []string
	for range 3 {
		c, q := send()
		calls, tids = append(calls, c), append(tids, q.T)
	}
	before := sent.Load()
	if _, err := s.Go(addrOf(remote), MethodPing, &Args{ID: rawID()}, callback); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("fourth Go: err = %v, want ErrOverloaded", err)
	}
	if sent.Load() != before {
		t.Fatal("the refused query was sent")
	}
	// Cancel frees its slot; its answer is late, and no callback runs.
	if !calls[0].Cancel() || calls[0].Cancel() {
		t.Fatal("Cancel: want true once, then false")
	}
	sendMsg(t, remote, s.LocalAddr(), responseTo(tids[0], rawID()))
	if got := log.nextDrop(t); got != DropLateResponse {
		t.Errorf("answer of the cancelled query dropped as %q, want %q", got, DropLateResponse)
	}
	send() // the freed slot
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := next(); !errors.Is(r.err, ErrClosed) {
			t.Fatalf("after Close: err = %v, want ErrClosed", r.err)
		}
	}
	select {
	case r := <-results:
		t.Fatalf("a fourth callback after Close (the cancelled query?): %+v, %v", r.m, r.err)
	default:
	}
	if calls[1].Cancel() {
		t.Error("Cancel after Close: want false, the query had ended")
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.maxFlight > 3 {
		t.Errorf("InFlight reached %d, bound 3", log.maxFlight)
	}
}
