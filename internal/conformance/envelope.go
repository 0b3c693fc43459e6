package conformance

import (
	"fmt"
	"sync"
)

// runEnvelope checks the KRPC envelope of a ping and its answer (BEP 5,
// KRPC Protocol).
func runEnvelope(e *env) {
	s := e.main
	r, err := s.query(e.ctx, "ping", nil)
	if err != nil {
		for _, c := range []*Check{cTEcho, cYResponse, cRID, cVersion, cCanonical, cSource} {
			e.broken(c, "ping", err)
		}
	} else {
		// The reply was matched by t, so t came back; check its bytes.
		if t, ok := r.msg.str("t"); ok && len(t) == 2 {
			e.pass(cTEcho, "t %x echoed", t)
		} else {
			e.fail(cTEcho, "t came back as %q", t)
		}
		rd, isR := r.r()
		if r.y() == "r" && isR {
			e.pass(cYResponse, `y="r" with an "r" dict`)
		} else {
			e.fail(cYResponse, "ping answered with %s", r.describe())
		}
		if id, ok := rd.str("id"); ok && len(id) == 20 {
			e.pass(cRID, "r.id is 20 bytes")
		} else {
			e.fail(cRID, "r.id is %d bytes (present: %v)", len(id), ok)
		}
		switch v, ok := r.msg.d["v"]; {
		case !ok:
			e.pass(cVersion, "no v (optional)")
		case v.kind == 's' && len(v.s) == 4:
			e.pass(cVersion, "v = %s", clientVersion(v.s))
		case v.kind == 's':
			e.fail(cVersion, "v is %d bytes (%q), not 2 + 2", len(v.s), v.s)
		default:
			e.fail(cVersion, "v is not a string")
		}
		if r.canonical {
			e.pass(cCanonical, "reply is canonical bencode")
		} else {
			e.fail(cCanonical, "reply is not canonical bencode: %q", r.raw)
		}
		if r.from == e.cfg.Target {
			e.pass(cSource, "answered from %s", r.from)
		} else {
			e.fail(cSource, "answered from %s, queried at %s", r.from, e.cfg.Target)
		}
	}

	// Transaction ids of other lengths and arbitrary bytes.
	var bad []string
	for _, t := range []string{"\x00", "\xff\x00abc\x01\x02\x03"} {
		m := encode(dict{"t": t, "y": "q", "q": "ping", "a": dict{"id": s.id[:]}})
		r, err := s.exchange(e.ctx, t, m)
		if err != nil {
			if err == errNoReply {
				bad = append(bad, fmt.Sprintf("t %x: no reply", t))
				continue
			}
			e.broken(cTBinary, "ping", err)
			return
		}
		if r.y() != "r" {
			bad = append(bad, fmt.Sprintf("t %x: %s", t, r.describe()))
		}
	}
	if len(bad) == 0 {
		e.pass(cTBinary, "1- and 8-byte binary t echoed")
	} else {
		e.fail(cTBinary, "%v", bad)
	}
}

// runErrors checks BEP 5's error codes.
func runErrors(e *env) {
	e.skip(cErr201, "no query provokes a generic error by the BEP")
	e.skip(cErr202, "no query provokes a server error by the BEP")
	r, err := e.main.query(e.ctx, "vote_for_me", nil)
	if err != nil {
		e.broken(cErr204, "unknown method", err)
		e.broken(cErrShape, "unknown method", err)
		return
	}
	errShape(e, r)
	if code, _ := r.errCode(); code == 204 {
		e.pass(cErr204, "unknown method: %s", r.describe())
	} else {
		e.fail(cErr204, "unknown method answered with %s", r.describe())
	}
}

// errShape checks the "e" list of an error reply.
func errShape(e *env, r *reply) {
	ev, ok := r.msg.d["e"]
	switch {
	case r.y() != "e":
		e.skip(cErrShape, "answered with %s, not an error", r.describe())
	case !ok || ev.kind != 'l' || len(ev.l) != 2 || ev.l[0].kind != 'i' || ev.l[1].kind != 's':
		e.fail(cErrShape, "e is %q", ev.raw)
	default:
		e.pass(cErrShape, "e = [%d, %q]", ev.l[0].i, ev.l[1].s)
	}
}

// runMalformed sends undecodable packets (each from its own socket, so
// that any answer is attributed) and queries with missing or invalid
// arguments.
func runMalformed(e *env) {
	id := string(e.main.id[:])
	silent := []struct {
		c   *Check
		pkt string
	}{
		{cSilentGarbage, "this is not bencode, but it is long enough to be read"},
		{cSilentTruncated, "d1:ad2:id20:" + id + "e1:q4:ping1:t2:zz1:y1:q"},
		{cSilentList, "l1:ad2:id20:" + id + "e1:q4:ping1:t2:zz1:y1:qe"},
		{cSilentNoT, "d1:ad2:id20:" + id + "e1:q4:ping1:y1:qe"},
		{cSilentBadY, "d1:ad2:id20:" + id + "e1:q4:ping1:t2:zz1:y1:xe"},
		{cSilentShort, "de"},
	}
	var wg sync.WaitGroup
	for _, c := range silent {
		s, err := e.newSock(e.main.src, e.main.id, false)
		if err != nil {
			e.skip(c.c, "%v", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.silence(e.ctx, []byte(c.pkt))
			switch {
			case err != nil:
				e.skip(c.c, "%v", err)
			case r == nil:
				e.pass(c.c, "no reply within %v", e.cfg.Timeout)
			case r.err == nil:
				t, _ := r.msg.str("t")
				e.fail(c.c, "answered with %s, t %q", r.describe(), t)
			default:
				e.fail(c.c, "answered with %q", r.raw)
			}
		}()
	}
	wg.Wait()

	s := e.main
	ih := randomID()
	cases := []struct {
		c   *Check
		msg dict
	}{
		{c203NoA, dict{"y": "q", "q": "ping"}},
		{c203NoID, dict{"y": "q", "q": "ping", "a": dict{}}},
		{c203ShortID, dict{"y": "q", "q": "ping", "a": dict{"id": id[:19]}}},
		{c203IntID, dict{"y": "q", "q": "ping", "a": dict{"id": 42}}},
		{c203NoTarget, dict{"y": "q", "q": "find_node", "a": dict{"id": id}}},
		{c203ShortTarget, dict{"y": "q", "q": "find_node", "a": dict{"id": id, "target": string(ih[:19])}}},
		{c203NoInfohash, dict{"y": "q", "q": "get_peers", "a": dict{"id": id}}},
		{c203NoPort, dict{"y": "q", "q": "announce_peer", "a": dict{"id": id, "info_hash": ih[:], "token": "abcd"}}},
		{c203GetNoTarget, dict{"y": "q", "q": "get", "a": dict{"id": id}}},
		{c203PutNoV, dict{"y": "q", "q": "put", "a": dict{"id": id, "token": "abcd"}}},
	}
	for _, c := range cases {
		expect203(e, c.c, s, c.msg)
	}
}

// expect203 sends msg (a transaction id is added) and wants error 203.
func expect203(e *env, c *Check, s *sock, msg dict) {
	t := s.tid()
	msg["t"] = t
	r, err := s.exchange(e.ctx, t, encode(msg))
	if err != nil {
		e.broken(c, "query", err)
		return
	}
	if code, _ := r.errCode(); code == 203 {
		e.pass(c, "%s", r.describe())
		return
	}
	e.fail(c, "answered with %s", r.describe())
}

// ask is s.query bounded by the run.
func (e *env) ask(s *sock, method string, args dict) (*reply, error) {
	return s.query(e.ctx, method, args)
}
