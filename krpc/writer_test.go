package krpc

import (
	"testing"
	"time"
)

// writerHandler answers each query as its method says: "twice" with a
// response then an error (the error must be ignored), "error" with a 201,
// "later" by detaching and handing the detached writer to the test (after
// trying to answer on the read loop's writer, which must be ignored),
// "after" by answering then detaching (the detached writer must be dead),
// anything else not at all.
func writerHandler(id ID, later chan<- ResponseWriter) Handler {
	return HandlerFunc(func(w ResponseWriter, q *Msg) {
		switch q.Q {
		case MethodPing:
			w.Reply(&Return{ID: id})
		case "twice":
			w.Reply(&Return{ID: id})
			w.Error(ErrCodeServer, "second answer")
		case "error":
			w.Error(ErrCodeGeneric, "refused")
			w.Reply(&Return{ID: id})
		case "later":
			d := w.Detach()
			w.Reply(&Return{ID: id}) // detached from: ignored
			later <- d
		case "after":
			w.Reply(&Return{ID: id})
			later <- w.Detach()
		}
	})
}

// TestServerWriterAnswersOnce: a handler's first answer is sent, every
// later one (Reply or Error, on the same writer or after Detach) is
// ignored; a detached writer answers after the handler has returned, from
// another goroutine, with the query's "t" and the BEP 42 "ip"; a handler
// that neither answers nor detaches is counted as not answered, and one
// that detaches is not. Each case ends with a ping: its reply being the
// next datagram proves nothing else was sent (one socket pair on loopback
// keeps order, and every answer here is sent before the ping).
func TestServerWriterAnswersOnce(t *testing.T) {
	srvID := ID([]byte("server-id-0123456789"))
	later := make(chan ResponseWriter, 1)
	s, log := newTestServer(t, writerHandler(srvID, later), ServerConfig{ClientVersion: "TS\x00\x01"})
	raw := newRawSocket(t)
	query := func(tid, method string) {
		t.Helper()
		sendMsg(t, raw, s.LocalAddr(), &Msg{T: tid, Y: KindQuery, Q: method, A: &Args{ID: rawID()}})
	}
	expect := func(what, tid, y string, code int64) {
		t.Helper()
		m, _ := readMsg(t, raw)
		if m.T != tid || m.Y != y {
			t.Fatalf("%s: got t=%q y=%q, want t=%q y=%q", what, m.T, m.Y, tid, y)
		}
		if y == KindResponse && (m.R == nil || m.R.ID != srvID) {
			t.Errorf("%s: response %+v, want the server id", what, m.R)
		}
		if y == KindError && (m.E == nil || m.E.Code != code) {
			t.Errorf("%s: error %+v, want code %d", what, m.E, code)
		}
		if m.IP == nil || m.IP.AddrPort() != addrOf(raw) || m.V != "TS\x00\x01" {
			t.Errorf("%s: ip=%v v=%q, want ip %s and the server's v", what, m.IP, m.V, addrOf(raw))
		}
	}
	sync := func(what, tid string) { // a ping whose reply must come next
		t.Helper()
		query(tid, MethodPing)
		expect(what+": the following ping", tid, KindResponse, 0)
	}

	query("a1", "twice")
	expect("twice", "a1", KindResponse, 0)
	sync("twice", "p1")

	query("a2", "error")
	expect("error", "a2", KindError, ErrCodeGeneric)
	sync("error", "p2")

	query("a3", "later")
	var d ResponseWriter
	select {
	case d = <-later:
	case <-time.After(waitLong):
		t.Fatalf("the handler did not detach within %v", waitLong)
	}
	if got := d.RemoteAddr(); got != addrOf(raw) {
		t.Errorf("detached writer's RemoteAddr = %s, want %s", got, addrOf(raw))
	}
	sync("later, before its answer", "p3") // the read loop goes on meanwhile
	done := make(chan struct{})
	go func() { // answered from another goroutine, after the handler returned
		defer close(done)
		d.Error(ErrCodeServer, "storage error")
		d.Reply(&Return{ID: srvID})
		d.Detach().Reply(&Return{ID: srvID})
	}()
	<-done
	expect("later", "a3", KindError, ErrCodeServer)
	sync("later", "p4")

	query("a4", "after")
	expect("after", "a4", KindResponse, 0)
	(<-later).Reply(&Return{ID: srvID}) // detached after answering: dead
	sync("after", "p5")

	query("a5", "silent")
	if got := log.nextDrop(t); got != DropReadOnly {
		t.Errorf("silent: dropped as %q, want %q", got, DropReadOnly)
	}
	sync("silent", "p6")
	select {
	case r := <-log.drops:
		t.Errorf("unexpected drop %q", r)
	default:
	}
}
