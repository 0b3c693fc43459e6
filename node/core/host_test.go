package core

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// eventLog records a node's Config.Events.
type eventLog struct {
	received, dropped, done []string
	inFlight                []int
}

func (l *eventLog) events() *krpc.Events {
	return &krpc.Events{
		Received:  func(kind string, _ int) { l.received = append(l.received, kind) },
		Sent:      func(string, int) { panic("Sent is the driver's") },
		Dropped:   func(reason string) { l.dropped = append(l.dropped, reason) },
		QueryDone: func(method, outcome string, _ time.Duration) { l.done = append(l.done, method+" "+outcome) },
		InFlight:  func(n int) { l.inFlight = append(l.inFlight, n) },
	}
}

// newHostNode returns a node configured as the daemon runs it: its own
// handler and Answered hook, no upkeep, events, read-only queries and a
// memory of late ids.
func newHostNode(ev *eventLog, answered *[]string, h func(*Node, Query, Writer)) *Node {
	var id krpc.ID
	id[0] = 0xaa
	return New(Config{
		ID: id, Rand: rand.New(rand.NewPCG(7, 7)), Handler: h, NoUpkeep: true,
		ReadOnly: true, LateIDs: 16, MaxPending: 2, Events: ev.events(),
		Answered: func(_ time.Time, from netip.AddrPort, method string, m *krpc.Msg, _ time.Duration) {
			*answered = append(*answered, method+" from "+from.String())
		},
	}, t0)
}

// TestHostQueryAndCancel: Query sends a read-only query whose answer
// reaches the Answered hook (not the node's own table) and then the
// callback; the node counts every packet and query; a cancelled query's
// late answer is dropped as late; MaxPending bounds the queries out.
func TestHostQueryAndCancel(t *testing.T) {
	var ev eventLog
	var answered []string
	a := newHostNode(&ev, &answered, nil)
	b := newTestNode(2, 2, nil)
	if _, ok := a.NextTimeout(); ok {
		t.Fatal("NoUpkeep node with nothing out wants a wake-up")
	}

	var got *krpc.Msg
	var gotErr error
	calls := 0
	h, err := a.Query(t0, addr(2), krpc.MethodPing, &krpc.Args{}, func(_ time.Time, m *krpc.Msg, err error) {
		calls++
		got, gotErr = m, err
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := a.PollTransmit()
	if !ok || !tr.Query || tr.To != addr(2) {
		t.Fatalf("queued %+v, %v; want a query to %s", tr, ok, addr(2))
	}
	var q krpc.Msg
	if err := krpc.Decode(tr.Data, &q); err != nil || q.RO != 1 || q.A.ID != a.ID() {
		t.Fatalf("query %+v (%v): want ro=1 and our id", q, err)
	}
	if d, ok := a.NextTimeout(); !ok || !d.Equal(t0.Add(DefaultQueryTimeout)) {
		t.Fatalf("NextTimeout %v %v, want the query's deadline", d, ok)
	}
	b.HandlePacket(t0, addr(1), tr.Data)
	ans, _ := b.PollTransmit()
	a.HandlePacket(t0.Add(time.Millisecond), addr(2), ans.Data)
	if calls != 1 || gotErr != nil || got == nil || got.R.ID != b.ID() {
		t.Fatalf("callback: %d calls, %v, %v", calls, got, gotErr)
	}
	if want := []string{"ping from " + addr(2).String()}; !slices.Equal(answered, want) {
		t.Fatalf("Answered saw %v, want %v", answered, want)
	}
	if a.Table().Len() != 0 {
		t.Fatalf("the node's own table took the responder, though Answered is set")
	}
	if a.Cancel(t0, h) {
		t.Fatal("Cancel of an answered query reports it in flight")
	}

	// Two out (MaxPending 2), a third refused; one cancelled: its answer
	// is late.
	h1, _ := a.Query(t0, addr(2), krpc.MethodPing, &krpc.Args{}, func(time.Time, *krpc.Msg, error) { calls++ })
	if _, err := a.Query(t0, addr(3), krpc.MethodPing, &krpc.Args{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Query(t0, addr(4), krpc.MethodPing, &krpc.Args{}, nil); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third query: %v, want ErrOverloaded", err)
	}
	tr, _ = a.PollTransmit()
	if !a.Cancel(t0, h1) {
		t.Fatal("Cancel of a query in flight reports it ended")
	}
	b.HandlePacket(t0, addr(1), tr.Data)
	ans, _ = b.PollTransmit()
	a.HandlePacket(t0, addr(2), ans.Data)
	if calls != 1 {
		t.Fatalf("a cancelled query's callback ran")
	}
	a.HandlePacket(t0, addr(2), []byte("d1:y1:xe"))

	if want := []string{krpc.PacketResponse, krpc.PacketResponse, krpc.PacketInvalid}; !slices.Equal(ev.received, want) {
		t.Errorf("received %v, want %v", ev.received, want)
	}
	if want := []string{krpc.DropLateResponse, krpc.DropUndecodable}; !slices.Equal(ev.dropped, want) {
		t.Errorf("dropped %v, want %v", ev.dropped, want)
	}
	if want := []string{"ping " + krpc.OutcomeAnswered, "ping " + krpc.OutcomeCancelled}; !slices.Equal(ev.done, want) {
		t.Errorf("queries done %v, want %v", ev.done, want)
	}
	if want := []int{1, 0, 1, 2, 1}; !slices.Equal(ev.inFlight, want) {
		t.Errorf("in flight %v, want %v", ev.inFlight, want)
	}
}

// TestHostTimeoutAndAbort: a query without an answer ends with an error
// that is krpc.ErrTimeout (the daemon's), counted as a timeout; Abort ends
// the rest with the error given; a handler that neither answers nor
// detaches is counted as an unanswered query.
func TestHostTimeoutAndAbort(t *testing.T) {
	var ev eventLog
	var answered []string
	a := newHostNode(&ev, &answered, func(*Node, Query, Writer) {})
	var errs []error
	record := func(_ time.Time, _ *krpc.Msg, err error) { errs = append(errs, err) }
	if _, err := a.Query(t0, addr(2), krpc.MethodFindNode, &krpc.Args{Target: &krpc.ID{}}, record); err != nil {
		t.Fatal(err)
	}
	a.HandleTimeout(t0.Add(DefaultQueryTimeout))
	if len(errs) != 1 || !errors.Is(errs[0], krpc.ErrTimeout) {
		t.Fatalf("timeout: %v, want krpc.ErrTimeout", errs)
	}
	if _, err := a.Query(t0, addr(3), krpc.MethodPing, &krpc.Args{}, record); err != nil {
		t.Fatal(err)
	}
	a.Abort(t0, krpc.ErrClosed)
	if len(errs) != 2 || !errors.Is(errs[1], krpc.ErrClosed) {
		t.Fatalf("abort: %v, want krpc.ErrClosed", errs)
	}
	if _, ok := a.NextTimeout(); ok {
		t.Fatal("nothing is out after Abort, yet the node wants a wake-up")
	}

	for sent := 0; sent < 2; sent++ {
		if tr, ok := a.PollTransmit(); !ok || !tr.Query {
			t.Fatalf("query %d: %+v %v, want it queued", sent, tr, ok)
		}
	}
	b := newTestNode(2, 2, nil)
	b.ping(t0, addr(1))
	ping, _ := b.PollTransmit()
	a.HandlePacket(t0, addr(2), ping.Data)
	if _, ok := a.PollTransmit(); ok {
		t.Fatal("a handler that did not answer sent something")
	}
	if want := []string{"find_node " + krpc.OutcomeTimeout}; !slices.Equal(ev.done, want) {
		t.Errorf("queries done %v, want %v", ev.done, want)
	}
	if want := []string{krpc.DropReadOnly}; !slices.Equal(ev.dropped, want) {
		t.Errorf("dropped %v, want %v", ev.dropped, want)
	}
}
