package conformance

import (
	"crypto/sha1"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

func randomID() krpc.ID { return krpc.RandomID() }

// token asks s for a get_peers token for ih.
func (e *env) token(s *sock, ih krpc.ID) (string, *reply, error) {
	r, err := e.ask(s, "get_peers", dict{"info_hash": ih[:]})
	if err != nil {
		return "", nil, err
	}
	rd, _ := r.r()
	tok, _ := rd.str("token")
	return tok, r, nil
}

// announce sends announce_peer from s; implied sets implied_port.
func (e *env) announce(s *sock, ih krpc.ID, token string, port int, implied bool, extra dict) (*reply, error) {
	a := dict{"info_hash": ih[:], "port": port, "token": token}
	if implied {
		a["implied_port"] = 1
	}
	for k, v := range extra {
		a[k] = v
	}
	r, err := e.ask(s, "announce_peer", a)
	if err == nil && r.y() == "r" {
		e.mu.Lock()
		e.announced = append(e.announced, ih)
		e.mu.Unlock()
	}
	return r, err
}

// peers returns the values the main querier is given for ih.
func (e *env) peers(ih krpc.ID, extra dict) ([]netip.AddrPort, *reply, error) {
	a := dict{"info_hash": ih[:]}
	for k, v := range extra {
		a[k] = v
	}
	r, err := e.ask(e.main, "get_peers", a)
	if err != nil {
		return nil, nil, err
	}
	rd, _ := r.r()
	var out []netip.AddrPort
	if vs, ok := rd.d["values"]; ok && vs.kind == 'l' {
		for _, v := range vs.l {
			if ap, err := krpc.ParseCompactPeer([]byte(v.s)); err == nil {
				out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			}
		}
	}
	return out, r, nil
}

// refused checks that an announce (or put) answered r, err was refused and,
// via stored, that nothing was stored; it records c.
func (e *env) refused(c *Check, r *reply, err error, stored func() (bool, error)) {
	if err != nil && err != errNoReply {
		e.broken(c, "query", err)
		return
	}
	ok, serr := stored()
	if r != nil && r.y() == "r" {
		if serr == nil && !ok {
			e.fail(c, "answered success (though nothing readable was stored)")
		} else {
			e.fail(c, "accepted and stored")
		}
		return
	}
	got := "no reply"
	if r != nil {
		got = r.describe()
	}
	switch {
	case serr != nil:
		e.broken(c, "read back", serr)
	case ok:
		e.fail(c, "answered %s, yet stored it", got)
	default:
		e.pass(c, "refused (%s), nothing stored", got)
	}
}

// runTokens checks write tokens (BEP 5 get_peers and announce_peer, BEP 44
// put): given, bound to the IP and the infohash or target, expiring.
func runTokens(e *env) {
	a, err := e.sock(1)
	if err != nil {
		e.skipRest("tokens", "%v", err)
		return
	}
	has := func(ih krpc.ID, peer netip.AddrPort) func() (bool, error) {
		return func() (bool, error) {
			ps, _, err := e.peers(ih, nil)
			return slices.Contains(ps, peer), err
		}
	}
	hasIP := func(ih krpc.ID, ip netip.Addr) func() (bool, error) {
		return func() (bool, error) {
			ps, _, err := e.peers(ih, nil)
			return slices.ContainsFunc(ps, func(p netip.AddrPort) bool { return p.Addr() == ip }), err
		}
	}

	ih1 := randomID()
	tok1, r, err := e.token(a, ih1)
	switch {
	case err != nil:
		e.broken(cTokenGiven, "get_peers", err)
		e.skipRest("tokens", "get_peers gave no token")
		return
	case tok1 == "":
		e.fail(cTokenGiven, "get_peers answered with %s and no token", r.describe())
		e.skipRest("tokens", "get_peers gave no token")
		return
	default:
		e.pass(cTokenGiven, "%d-byte token", len(tok1))
	}

	port := 20000 + int(ih1[0])<<4 + int(ih1[1]&15)
	r, err = e.announce(a, ih1, tok1, port, false, nil)
	if err != nil {
		e.broken(cAnnounceStored, "announce_peer", err)
	} else if r.y() != "r" {
		e.fail(cAnnounceStored, "announce with a fresh token answered with %s", r.describe())
	} else if ok, err := has(ih1, netip.AddrPortFrom(a.addr.Addr(), uint16(port)))(); err != nil {
		e.broken(cAnnounceStored, "get_peers", err)
	} else if ok {
		e.pass(cAnnounceStored, "get_peers lists %s", netip.AddrPortFrom(a.addr.Addr(), uint16(port)))
	} else {
		e.fail(cAnnounceStored, "announce accepted but get_peers does not list %s", netip.AddrPortFrom(a.addr.Addr(), uint16(port)))
	}

	ih2 := randomID()
	if tok, _, err := e.token(a, ih2); err != nil {
		e.broken(cImpliedPort, "get_peers", err)
	} else if r, err := e.announce(a, ih2, tok, 1, true, nil); err != nil {
		e.broken(cImpliedPort, "announce_peer", err)
	} else if r.y() != "r" {
		e.fail(cImpliedPort, "announce with implied_port answered with %s", r.describe())
	} else if ps, _, err := e.peers(ih2, nil); err != nil {
		e.broken(cImpliedPort, "get_peers", err)
	} else if slices.Contains(ps, a.addr) {
		e.pass(cImpliedPort, "stored at the UDP source port %d", a.addr.Port())
	} else {
		e.fail(cImpliedPort, "values %v lack %s", ps, a.addr)
	}

	// The same IP from another port.
	if a2, err := e.sock(1); err != nil {
		e.skip(cTokenOtherPort, "%v", err)
	} else {
		ih3 := randomID()
		if tok, _, err := e.token(a, ih3); err != nil {
			e.broken(cTokenOtherPort, "get_peers", err)
		} else if r, err := e.announce(a2, ih3, tok, 1, true, nil); err != nil {
			e.broken(cTokenOtherPort, "announce_peer", err)
		} else if r.y() == "r" {
			e.pass(cTokenOtherPort, "token from %s accepted from %s", a.addr, a2.addr)
		} else {
			e.fail(cTokenOtherPort, "token from %s used from %s: %s", a.addr, a2.addr, r.describe())
		}
	}

	ih4 := randomID()
	r, err = e.announce(a, ih4, "\x01\x02\x03\x04\x05\x06\x07\x08", 1, true, nil)
	e.refused(cTokenBad, r, err, hasIP(ih4, a.addr.Addr()))
	switch code, _ := codeOf(r); {
	case err != nil && err != errNoReply:
		e.broken(cTokenBad203, "announce_peer", err)
	case code == 203:
		e.pass(cTokenBad203, "%s", r.describe())
	default:
		e.fail(cTokenBad203, "invented token answered with %s", describe(r))
	}

	ih6 := randomID()
	r, err = e.announce(a, ih6, tok1, 1, true, nil)
	e.refused(cTokenInfohash, r, err, hasIP(ih6, a.addr.Addr()))

	// Another IP.
	if len(e.srcs) < 2 {
		e.skip(cTokenIP, "needs a second source address (--source)")
		e.skip(cPutTokenIP, "needs a second source address (--source)")
	} else if b, err := e.sock(2); err != nil {
		e.skip(cTokenIP, "%v", err)
	} else {
		ih5 := randomID()
		if tok, _, err := e.token(a, ih5); err != nil {
			e.broken(cTokenIP, "get_peers", err)
		} else {
			r, err := e.announce(b, ih5, tok, 1, true, nil)
			e.refused(cTokenIP, r, err, hasIP(ih5, b.addr.Addr()))
		}
		v := encode("conformance put-ip-bound " + randomID().String())
		target := krpc.ID(sha1.Sum(v))
		if tok, err := e.getToken(a, target); err != nil {
			e.broken(cPutTokenIP, "get", err)
		} else {
			r, err := e.ask(b, "put", dict{"token": tok, "v": raw(v)})
			e.refused(cPutTokenIP, r, err, e.holds(target))
		}
	}

	v1 := encode("conformance put-target-bound " + randomID().String())
	v2 := encode("conformance put-target-bound " + randomID().String())
	if tok, err := e.getToken(a, krpc.ID(sha1.Sum(v1))); err != nil {
		e.broken(cPutTokenTarget, "get", err)
	} else {
		r, err := e.ask(a, "put", dict{"token": tok, "v": raw(v2)})
		e.refused(cPutTokenTarget, r, err, e.holds(krpc.ID(sha1.Sum(v2))))
	}

	if e.cfg.TokenWait <= 0 {
		e.skip(cTokenExpiry, "tokens may live ten minutes (BEP 5); set a token wait longer than the node's token lifetime to run it")
		return
	}
	ih7 := randomID()
	tok, _, err := e.token(a, ih7)
	if err != nil {
		e.broken(cTokenExpiry, "get_peers", err)
		return
	}
	select {
	case <-time.After(e.cfg.TokenWait):
	case <-e.ctx.Done():
		e.skip(cTokenExpiry, "total time bound reached while waiting %v", e.cfg.TokenWait)
		return
	}
	r, err = e.announce(a, ih7, tok, 1, true, nil)
	e.refused(cTokenExpiry, r, err, hasIP(ih7, a.addr.Addr()))
}

// codeOf is the error code of r, -1 if none.
func codeOf(r *reply) (int64, string) {
	if r == nil {
		return -1, ""
	}
	return r.errCode()
}

func describe(r *reply) string { return r.describe() }

// getToken asks s for a BEP 44 get token for target.
func (e *env) getToken(s *sock, target krpc.ID) (string, error) {
	r, err := e.ask(s, "get", dict{"target": target[:]})
	if err != nil {
		return "", err
	}
	rd, _ := r.r()
	tok, ok := rd.str("token")
	if !ok {
		return "", fmt.Errorf("get answered with %s and no token", r.describe())
	}
	return tok, nil
}

// holds reports, via a get from the main querier, whether the target holds
// an item at target.
func (e *env) holds(target krpc.ID) func() (bool, error) {
	return func() (bool, error) {
		r, err := e.ask(e.main, "get", dict{"target": target[:]})
		if err != nil {
			return false, err
		}
		rd, _ := r.r()
		return rd.has("v"), nil
	}
}
