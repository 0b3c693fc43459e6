package conformance

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// seeding is the shared fixture of the routing checks: queriers whose ids
// lie close to a probe target near the target's own id (so they land in
// its deepest buckets, which always have room), each of which pinged,
// asked get_peers and announced, as a live node would; and one read-only
// querier (BEP 43), closer to the probe target than all of them, that did
// the same with ro=1.
type seeding struct {
	probe krpc.ID
	seeds []*sock
	ro    *sock
	roErr error // the read-only querier's ping
	roAns *reply
	known map[krpc.ID]bool // seeds the target has listed
	lists [][]krpc.NodeInfo
	err   string // why the fixture is unusable
}

// idNear returns a random id sharing its first prefixBytes bytes with p.
func idNear(p krpc.ID, prefixBytes int) krpc.ID {
	var id krpc.ID
	_, _ = rand.Read(id[:])
	copy(id[:prefixBytes], p[:prefixBytes])
	// Differ from p right after the prefix, so the order of distances is
	// set by this byte.
	if id[prefixBytes] == p[prefixBytes] {
		id[prefixBytes] ^= 0x80
	}
	return id
}

// seed builds the fixture once.
func (e *env) seed() *seeding {
	e.seedOnce.Do(func() { e.seeded = e.buildSeeding() })
	return e.seeded
}

func (e *env) buildSeeding() *seeding {
	sd := &seeding{known: map[krpc.ID]bool{}}
	// The probe shares 24 to 31 bits with the target's id, and differs
	// from run to run, so seeds left by an earlier run are elsewhere.
	sd.probe = idNear(e.tid, 3)
	var b [1]byte
	_, _ = rand.Read(b[:])
	sd.probe[3] = e.tid[3] ^ (b[0] | 1)
	n := 6
	var err error
	for i := range n {
		var s *sock
		// Sources 2.. (source 1 is the token checks'); wrap on few sources.
		if s, err = e.newSock(e.src(2+i), idNear(sd.probe, 5), false); err != nil {
			sd.err = err.Error()
			return sd
		}
		sd.seeds = append(sd.seeds, s)
	}
	if sd.ro, err = e.newSock(e.src(len(e.srcs)-1), idNear(sd.probe, 12), true); err != nil {
		sd.err = err.Error()
		return sd
	}
	var wg sync.WaitGroup
	for _, s := range append(slices.Clone(sd.seeds), sd.ro) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.ask(s, "ping", nil)
			if s == sd.ro {
				sd.roAns, sd.roErr = r, err
			}
			ih := randomID()
			if tok, _, err := e.token(s, ih); err == nil && tok != "" {
				_, _ = e.announce(s, ih, tok, 1, true, nil)
			}
		}()
	}
	wg.Wait()
	// Wait, within a bound, for the target to list the seeds.
	deadline := time.Now().Add(min(5*time.Second, 10*e.cfg.Timeout))
	for e.ctx.Err() == nil {
		r, err := e.ask(e.main, "find_node", dict{"target": sd.probe[:]})
		if err == nil {
			rd, _ := r.r()
			ns := parseNodes(rd, e.nodesKey())
			sd.lists = append(sd.lists, ns)
			for _, nd := range ns {
				for _, s := range sd.seeds {
					if nd.ID == s.id && nd.Addr == s.addr {
						sd.known[s.id] = true
					}
				}
			}
		}
		if len(sd.known) == len(sd.seeds) || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond): // polling interval: the target gives no event
		case <-e.ctx.Done():
		}
	}
	if len(sd.known) == 0 {
		sd.err = fmt.Sprintf("the target listed none of %d queriers that pinged and announced to it", len(sd.seeds))
	}
	return sd
}

// closer reports whether a is closer to t than b (XOR distance, BEP 5).
func closer(t, a, b krpc.ID) bool { return a.Xor(t).Less(b.Xor(t)) }

// runNodes checks closest-node replies (BEP 5 find_node, get_peers).
func runNodes(e *env) {
	sd := e.seed()
	r, err := e.ask(e.main, "find_node", dict{"target": sd.probe[:]})
	if err != nil {
		for _, c := range []*Check{cNodesCompact, cNodesCount, cNodesSorted, cNodesClosest} {
			e.broken(c, "find_node", err)
		}
	} else {
		rd, _ := r.r()
		raw, ok := rd.str(e.nodesKey())
		ns := parseNodes(rd, e.nodesKey())
		switch {
		case !ok:
			e.fail(cNodesCompact, "find_node answered with %s and no %s", r.describe(), e.nodesKey())
		case len(raw)%e.nodeLen() != 0:
			e.fail(cNodesCompact, "%s is %d bytes, not a multiple of %d", e.nodesKey(), len(raw), e.nodeLen())
		default:
			e.pass(cNodesCompact, "%d nodes", len(ns))
		}
		if len(ns) <= 8 {
			e.pass(cNodesCount, "%d nodes", len(ns))
		} else {
			e.fail(cNodesCount, "%d nodes", len(ns))
		}
		if len(ns) < 2 {
			e.skip(cNodesSorted, "%d nodes listed", len(ns))
		} else if slices.IsSortedFunc(ns, func(a, b krpc.NodeInfo) int {
			if closer(sd.probe, a.ID, b.ID) {
				return -1
			}
			if a.ID == b.ID {
				return 0
			}
			return 1
		}) {
			e.pass(cNodesSorted, "%d nodes, closest first", len(ns))
		} else {
			e.fail(cNodesSorted, "nodes not in order of distance to the target")
		}
		closestCheck(e, sd, ns)
	}

	// The exact node, and the querier itself.
	var known []*sock
	for _, s := range sd.seeds {
		if sd.known[s.id] {
			known = append(known, s)
		}
	}
	if len(known) == 0 {
		e.skip(cNodesExact, "%s", sd.err)
		e.skip(cNodesQuerier, "%s", sd.err)
	} else {
		k := known[len(known)-1]
		if r, err := e.ask(e.main, "find_node", dict{"target": k.id[:]}); err != nil {
			e.broken(cNodesExact, "find_node", err)
		} else {
			rd, _ := r.r()
			ns := parseNodes(rd, e.nodesKey())
			if slices.ContainsFunc(ns, func(n krpc.NodeInfo) bool { return n.ID == k.id && n.Addr == k.addr }) {
				e.pass(cNodesExact, "find_node for a known node's id lists it")
			} else {
				e.fail(cNodesExact, "find_node for %s (listed before) does not list it: %v", k.id, ns)
			}
		}
		q := known[0]
		if r, err := e.ask(q, "find_node", dict{"target": q.id[:]}); err != nil {
			e.broken(cNodesQuerier, "find_node", err)
		} else {
			rd, _ := r.r()
			ns := parseNodes(rd, e.nodesKey())
			if slices.ContainsFunc(ns, func(n krpc.NodeInfo) bool { return n.ID == q.id || n.Addr == q.addr }) {
				e.fail(cNodesQuerier, "find_node for the querier's own id lists the querier %s@%s", q.id, q.addr)
			}
		}
	}

	if r, err := e.ask(e.main, "get_peers", dict{"info_hash": sd.probe[:]}); err != nil {
		e.broken(cGetPeersNodes, "get_peers", err)
	} else {
		rd, _ := r.r()
		if s, ok := rd.str(e.nodesKey()); ok && len(s) >= e.nodeLen() {
			e.pass(cGetPeersNodes, "%d nodes", len(s)/e.nodeLen())
		} else {
			e.fail(cGetPeersNodes, "get_peers for an unknown infohash answered with %s and %d bytes of nodes", r.describe(), len(s))
		}
	}
}

// finishQuerier records the querier check from every reply of the run,
// unless the provocation already failed it. A reply listing its querier
// fails it even when the provocation could not run.
func (e *env) finishQuerier() {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev, done := e.results[cNodesQuerier.Name]
	switch {
	case done && prev.Status == Fail:
	case len(e.listed) > 0:
		e.results[cNodesQuerier.Name] = Result{Check: *cNodesQuerier, Status: Fail,
			Reason: fmt.Sprintf("%d replies listed their own querier, e.g. %s", len(e.listed), e.listed[0])}
	case !done:
		e.results[cNodesQuerier.Name] = Result{Check: *cNodesQuerier, Status: Pass,
			Reason: "no reply of the run listed its querier, including find_node for the querier's own id"}
	}
}

// closestCheck: every seed the target has shown it knows, closer to the
// probe than the farthest node listed (or any, when fewer than K were
// listed), must be listed.
func closestCheck(e *env, sd *seeding, ns []krpc.NodeInfo) {
	if len(sd.known) == 0 {
		e.skip(cNodesClosest, "%s", sd.err)
		return
	}
	var missing []string
	for _, s := range sd.seeds {
		if !sd.known[s.id] || slices.ContainsFunc(ns, func(n krpc.NodeInfo) bool { return n.ID == s.id }) {
			continue
		}
		if len(ns) < 8 || closer(sd.probe, s.id, ns[len(ns)-1].ID) {
			missing = append(missing, s.id.String())
		}
	}
	if len(missing) > 0 {
		e.fail(cNodesClosest, "known closer nodes left out: %v (listed %d)", missing, len(ns))
		return
	}
	e.pass(cNodesClosest, "all %d known seeded nodes that belong among the closest are listed", len(sd.known))
}

// runBEP32 checks "want" and "values" (BEP 32).
func runBEP32(e *env) {
	sd := e.seed()
	ask := func(want any) (*reply, value, error) {
		r, err := e.ask(e.main, "find_node", dict{"target": sd.probe[:], "want": want})
		if err != nil {
			return nil, value{}, err
		}
		rd, _ := r.r()
		return r, rd, nil
	}
	own, other, ownKey, otherKey := "n4", "n6", "nodes", "nodes6"
	if e.v6() {
		own, other, ownKey, otherKey = other, own, otherKey, ownKey
	}
	if r, rd, err := ask([]string{own}); err != nil {
		e.broken(cWantOwn, "find_node", err)
	} else if rd.has(ownKey) {
		e.pass(cWantOwn, "want=[%s]: %s present", own, ownKey)
	} else {
		e.fail(cWantOwn, "want=[%s] answered with %s without %s", own, r.describe(), ownKey)
	}
	if r, rd, err := ask([]string{other}); err != nil {
		e.broken(cWantOtherOnly, "find_node", err)
	} else if rd.has(ownKey) {
		e.fail(cWantOtherOnly, "want=[%s] answered with %s", other, ownKey)
	} else if r.y() != "r" {
		e.fail(cWantOtherOnly, "want=[%s] answered with %s", other, r.describe())
	} else {
		e.pass(cWantOtherOnly, "want=[%s]: no %s; %s %s", other, ownKey, otherKey, presence(rd.has(otherKey)))
	}
	if r, rd, err := ask([]string{own, "zz", "n9"}); err != nil {
		e.broken(cWantUnknown, "find_node", err)
	} else if r.y() == "r" && rd.has(ownKey) {
		e.pass(cWantUnknown, "want=[%s zz n9] answered with %s", own, ownKey)
	} else {
		e.fail(cWantUnknown, "want=[%s zz n9] answered with %s", own, r.describe())
	}

	e.mu.Lock()
	announced := slices.Clone(e.announced)
	e.mu.Unlock()
	if len(announced) == 0 {
		e.skip(cValuesFamily, "no announce was accepted")
		return
	}
	_, r, err := e.peers(announced[0], nil)
	if err != nil {
		e.broken(cValuesFamily, "get_peers", err)
		return
	}
	rd, _ := r.r()
	vs, ok := rd.d["values"]
	if !ok || vs.kind != 'l' {
		e.skip(cValuesFamily, "get_peers for an announced infohash answered with %s and no values", r.describe())
		return
	}
	want, fam := 6, "IPv4"
	if e.v6() {
		want, fam = 18, "IPv6"
	}
	for _, v := range vs.l {
		if v.kind != 's' || len(v.s) != want {
			e.fail(cValuesFamily, "a value of %d bytes in a reply over %s", len(v.s), fam)
			return
		}
	}
	e.pass(cValuesFamily, "%d values of %d bytes over %s", len(vs.l), want, fam)
}

func presence(b bool) string {
	if b {
		return "present"
	}
	return "absent (no table of that family)"
}

// v6 reports whether the target is reached over IPv6.
func (e *env) v6() bool { return !e.cfg.Target.Addr().Is4() }

// nodesKey is the node list of the target's family (BEP 32).
func (e *env) nodesKey() string {
	if e.v6() {
		return "nodes6"
	}
	return "nodes"
}

// nodeLen is the size of one compact node info of the target's family.
func (e *env) nodeLen() int {
	if e.v6() {
		return 38
	}
	return 26
}

// finishPacketSize records the packet size check from every reply of the run.
func (e *env) finishPacketSize() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, done := e.results[cPacketSize.Name]; done {
		return
	}
	st, reason := Pass, "every reply without a BEP 44 value fit in 1024 bytes"
	if len(e.oversize) > 0 {
		st, reason = Fail, fmt.Sprintf("%v", e.oversize)
	}
	e.results[cPacketSize.Name] = Result{Check: *cPacketSize, Status: st, Reason: reason}
}

// runBEP42 checks the "ip" field and id rules (BEP 42).
func runBEP42(e *env) {
	s := e.main
	if r, err := e.ask(s, "ping", nil); err != nil {
		e.broken(cIPField, "ping", err)
	} else {
		ipCheck(e, cIPField, s, r)
	}
	// An id that does not match our address (random: it matches with odds
	// of 2^-21).
	if rs, err := e.newSock(e.srcs[0], krpc.RandomID(), false); err != nil {
		e.skip(cServeAnyID, "%v", err)
	} else if r, err := e.ask(rs, "ping", nil); err != nil {
		e.broken(cServeAnyID, "ping", err)
	} else if r.y() == "r" {
		note := ""
		if e.local && !e.compliant {
			note = " (a local source may be exempt)"
		}
		e.pass(cServeAnyID, "a random id was served%s", note)
	} else {
		e.fail(cServeAnyID, "a random id was answered with %s", r.describe())
	}
	if r, err := e.ask(s, "vote_for_me", nil); err != nil {
		e.broken(cIPInErrors, "unknown method", err)
	} else if r.y() != "e" {
		e.skip(cIPInErrors, "unknown method answered with %s", r.describe())
	} else {
		ipCheck(e, cIPInErrors, s, r)
	}
	ip := e.cfg.Target.Addr()
	if e.local || ip.IsLoopback() {
		e.skip(cTargetIDValid, "the target's address %s is exempt (local network)", ip)
	} else if bep42Valid(e.tid, ip) {
		e.pass(cTargetIDValid, "id %s matches %s", e.tid, ip)
	} else {
		e.fail(cTargetIDValid, "id %s does not match %s", e.tid, ip)
	}
}

// ipCheck checks the top-level "ip" of r against the querier's address.
func ipCheck(e *env, c *Check, s *sock, r *reply) {
	raw, ok := r.msg.str("ip")
	if !ok {
		e.fail(c, "no top-level ip in %s", r.describe())
		return
	}
	ap, err := krpc.ParseCompactPeer([]byte(raw))
	if err != nil {
		e.fail(c, "ip: %v", err)
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	switch {
	case ap == s.addr:
		e.pass(c, "ip = %s", ap)
	case !e.local:
		e.pass(c, "ip = %s (we sent from %s, perhaps through a NAT)", ap, s.addr)
	default:
		e.fail(c, "ip = %s, but we sent from %s", ap, s.addr)
	}
}

// bep42CRC is the CRC32C of ip masked and combined with r (BEP 42, Node ID
// restriction): 4 bytes of an IPv4 address, the first 8 of an IPv6 one.
func bep42CRC(ip netip.Addr, r byte) uint32 {
	var b []byte
	if ip = ip.Unmap(); ip.Is4() {
		a := ip.As4()
		b = a[:]
		for i, m := range []byte{0x03, 0x0f, 0x3f, 0xff} {
			b[i] &= m
		}
	} else {
		a := ip.As16()
		b = a[:8]
		for i, m := range []byte{0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff} {
			b[i] &= m
		}
	}
	b[0] |= (r & 7) << 5
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// bep42Valid verifies a node id against an IP (BEP 42, Node ID
// restriction): the top 21 bits are the CRC32C of the masked IP with r, the
// low 3 bits of the last byte.
func bep42Valid(id krpc.ID, ip netip.Addr) bool {
	crc := bep42CRC(ip, id[19])
	return id[0] == byte(crc>>24) && id[1] == byte(crc>>16) && id[2]&0xf8 == byte(crc>>8)&0xf8
}

// bep42ID returns a random id valid for ip (BEP 42).
func bep42ID(ip netip.Addr) krpc.ID {
	var id krpc.ID
	_, _ = rand.Read(id[:])
	crc := bep42CRC(ip, id[19])
	id[0], id[1], id[2] = byte(crc>>24), byte(crc>>16), byte(crc>>8)&0xf8|id[2]&7
	return id
}

// runBEP43 checks that a read-only querier is served and not added.
func runBEP43(e *env) {
	sd := e.seed()
	switch {
	case sd.ro == nil:
		e.skip(cROAnswered, "%s", sd.err)
		e.skip(cRONotAdded, "%s", sd.err)
		return
	case sd.roErr != nil:
		e.broken(cROAnswered, "ping with ro=1", sd.roErr)
	case sd.roAns.y() == "r":
		e.pass(cROAnswered, "ping with ro=1 answered")
	default:
		e.fail(cROAnswered, "ping with ro=1 answered with %s", sd.roAns.describe())
	}
	if len(sd.known) == 0 {
		e.skip(cRONotAdded, "%s, so its absence would prove nothing", sd.err)
		return
	}
	ro := sd.ro
	var seen []string
	lists := slices.Clone(sd.lists)
	for _, target := range []krpc.ID{sd.probe, ro.id} {
		if r, err := e.ask(e.main, "find_node", dict{"target": target[:]}); err == nil {
			rd, _ := r.r()
			lists = append(lists, parseNodes(rd, e.nodesKey()))
		}
	}
	for _, l := range lists {
		for _, n := range l {
			if n.ID == ro.id || n.Addr == ro.addr {
				seen = append(seen, n.String())
			}
		}
	}
	q := ro.queried.Load()
	switch {
	case len(seen) > 0:
		e.fail(cRONotAdded, "the read-only querier (ping, get_peers, announce_peer with ro=1) is listed in find_node replies (%d times) while %d of %d seeded queriers are", len(seen), len(sd.known), len(sd.seeds))
	case q > 0:
		e.fail(cRONotAdded, "the target sent %d queries to the read-only querier", q)
	default:
		e.pass(cRONotAdded, "never listed nor queried, while %d of %d queriers that did the same without ro=1 are listed", len(sd.known), len(sd.seeds))
	}
}
