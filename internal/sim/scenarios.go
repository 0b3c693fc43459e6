package sim

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/storage"
)

// lookup: nodes join through the routers and warm up; swarms are
// announced and items put (publish); then find_node lookups for random
// targets, and get_peers and get lookups for the swarms and items, run
// from random nodes.
func (s *run) lookup() {
	s.build(s.cfg.Nodes)
	warmEnd := s.joinAll(s.net.Peers)
	s.measureCost()
	swarms, items := s.publish(warmEnd)
	target := func(i int) krpc.ID {
		switch i % 3 {
		case 1:
			return swarms[(i/3)%len(swarms)]
		case 2:
			return items[(i/3)%len(items)]
		}
		return s.randomID()
	}
	b := s.lookups(s.cfg.Lookups, warmEnd+publishFor, nil, target, nil, nil)
	s.finish(b)
	s.summary(b)
}

// What the lookup scenario publishes before its measured lookups:
// publishedTargets swarms, each announced by swarmPeers random nodes,
// and publishedTargets immutable items, each put by one random node, all
// within publishWithin of the warm-up's end; the measured lookups start
// publishFor after it. An announce or a put is a lookup and a round of
// writes: a second or two.
const (
	publishedTargets = 32
	swarmPeers       = 8
	publishWithin    = 30 * time.Second
	publishFor       = time.Minute
)

// publish announces the swarms and puts the items from at on, and returns
// their targets (infohashes, and items' targets) in s.published too.
func (s *run) publish(at time.Duration) (swarms, items []krpc.ID) {
	s.published = make(map[krpc.ID]bool, 2*publishedTargets)
	start := func(do func(c *core.Node, now time.Time)) {
		s.net.At(at+time.Duration(s.net.Rand.Int64N(int64(publishWithin))), func() {
			if p := s.randomPeer(nil); p != nil {
				s.net.Do(p, do)
			}
		})
	}
	for i := range publishedTargets {
		ih := s.randomID()
		swarms = append(swarms, ih)
		s.published[ih] = true
		for j := range swarmPeers {
			port := 6881 + j
			start(func(c *core.Node, now time.Time) { c.Announce(now, ih, port, nil) })
		}
		text := fmt.Sprintf("published item %d of run %d", i, s.cfg.Seed)
		it := storage.Item{V: fmt.Appendf(nil, "%d:%s", len(text), text)}
		items = append(items, it.Target())
		s.published[it.Target()] = true
		start(func(c *core.Node, now time.Time) { c.PutItem(now, it, nil) })
	}
	return swarms, items
}

// Churn model: sessions and absences are log-normal (heavy-tailed), with
// medians of an hour and sigma 1.2: most sessions are short, a few last
// days (Stutzbach and Rejaie, IMC 2006, measured such tails in Kad and
// Mainline).
const (
	sessionMedian = time.Hour
	absenceMedian = time.Hour
	churnSigma    = 1.2
)

// churn: publishers put items and keep them (their cores re-put them
// every hour, core.Node.Keep) while the other nodes come and go for Hours
// simulated hours; at the end each item is looked up from a random node.
// Publishers stay up.
func (s *run) churn() {
	s.build(s.cfg.Nodes)
	items := min(s.cfg.Items, (s.cfg.Nodes-s.cfg.Routers)/4)
	publishers := make(map[int32]bool, items) // lookups only, never iterated
	var pubs []*Peer
	for len(pubs) < items {
		p := s.net.Peers[s.cfg.Routers+s.net.Rand.IntN(len(s.net.Peers)-s.cfg.Routers)]
		if p.NAT || publishers[p.Index] {
			continue
		}
		publishers[p.Index] = true
		pubs = append(pubs, p)
	}
	warmEnd := s.joinAll(s.net.Peers)
	end := warmEnd + time.Duration(s.cfg.Hours)*time.Hour
	for _, p := range s.net.Peers[s.cfg.Routers:] {
		if !publishers[p.Index] {
			s.churnPeer(p, warmEnd+s.lognormal(sessionMedian), end)
		}
	}
	values := make([][]byte, len(pubs))
	for i, p := range pubs {
		v := fmt.Appendf(nil, "%d:item %d of run %d", len(fmt.Sprintf("item %d of run %d", i, s.cfg.Seed)), i, s.cfg.Seed)
		values[i] = v
		it := storage.Item{V: v}
		s.net.At(warmEnd+time.Duration(s.net.Rand.Int64N(int64(time.Minute))), func() {
			s.net.Do(p, func(c *core.Node, now time.Time) {
				// The publisher puts it, and its core re-puts it every
				// hour (BEP 44).
				c.PutItem(now, it, nil)
				c.Keep(now, core.Kept{Target: it.Target(), Item: &it})
			})
		})
	}
	s.advance(end)
	s.measureCost()
	// Global knowledge: which items some up node still stores, so that an
	// item the lookups miss can be told from one the network lost.
	held := 0
	for _, v := range values {
		target := storage.ImmutableTarget(v)
		for _, p := range s.net.Peers {
			if p.Up() && p.Core.HasItem(target, s.net.Now()) {
				held++
				break
			}
		}
	}
	s.rep.ItemsHeldPct = round2(100 * float64(held) / float64(max(len(values), 1)))
	// Survival: each item is looked up from a random up node.
	found, pending := 0, len(values)
	for _, v := range values {
		src := s.randomPeer(func(p *Peer) bool { return !publishers[p.Index] })
		if src == nil {
			src = pubs[0]
		}
		target := storage.ImmutableTarget(v)
		s.net.Do(src, func(c *core.Node, now time.Time) {
			c.Get(now, target, func(r core.Result) {
				s.mu.Lock()
				defer s.mu.Unlock()
				pending--
				if string(r.Value) == string(v) {
					found++
				}
			})
		})
	}
	b := s.lookups(s.cfg.Lookups, s.net.Elapsed(), nil, nil, nil, nil)
	s.finish(b)
	for limit := s.net.Elapsed() + 5*time.Minute; pending > 0 && s.net.Elapsed() < limit; {
		s.advance(s.net.Elapsed() + drain)
	}
	s.summary(b)
	s.rep.Items = len(values)
	s.rep.ItemsSurvivedPct = round2(100 * float64(found) / float64(max(len(values), 1)))
}

// churnPeer takes p down at down, and up again after an absence, and so on
// until end; it comes back with an empty state and bootstraps again.
func (s *run) churnPeer(p *Peer, down, end time.Duration) {
	if down >= end {
		return
	}
	s.net.At(down, func() {
		s.net.Stop(p)
		up := s.net.Elapsed() + s.lognormal(absenceMedian)
		if up >= end {
			return
		}
		s.net.At(up, func() {
			s.net.Start(p)
			s.net.Do(p, func(c *core.Node, now time.Time) { c.Bootstrap(now, s.routers, nil) })
			s.churnPeer(p, s.net.Elapsed()+s.lognormal(sessionMedian), end)
		})
	})
}

// lognormal draws a duration with the given median and sigma churnSigma.
func (s *run) lognormal(median time.Duration) time.Duration {
	d := time.Duration(float64(median) * math.Exp(churnSigma*s.net.Rand.NormFloat64()))
	return max(d, time.Minute)
}

// sybil: a /24 of attackers whose ids are crafted to be the closest to a
// set of targets joins the network; every node limits one /24 to one
// entry per bucket and per lookup (practice, libtorrent). Reported: the
// share of lookup result slots the /24 holds, and whether the closest
// honest node was still found.
func (s *run) sybil() {
	const sybils, targets = 32, 16
	s.cfg.Net.Table.MaxPerIP = 1
	s.cfg.Net.Table.MaxPerSubnetPerBucket = 1
	s.cfg.Net.MaxPerSubnet = 1
	s.build(s.cfg.Nodes)
	goals := make([]krpc.ID, targets)
	for i := range goals {
		goals[i] = s.randomID()
	}
	first := int32(len(s.net.Peers))
	for i := range sybils {
		id := goals[i%targets]
		id[krpc.IDLen-1] ^= byte(1 + i/targets) // within a few bits of the target
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{66, 66, 66, byte(i + 1)}), 6881)
		s.addPeerAt(addr, id, 0)
	}
	isSybil := func(p *Peer) bool { return p.Index >= first }
	warmEnd := s.joinAll(s.net.Peers)
	s.measureCost()
	honest := func(src, dst *Peer) bool { return !isSybil(dst) }
	b := s.lookups(s.cfg.Lookups, warmEnd, func(p *Peer) bool { return !isSybil(p) },
		func(i int) krpc.ID { return goals[i%targets] }, honest, isSybil)
	s.finish(b)
	s.summary(b)
	s.rep.Phases = []Phase{s.phase("attacked targets", b)}
}

// storm: nine tenths of the network joins and warms up; then the last
// tenth joins within one minute through one router, trying up to three
// times.
func (s *run) storm() {
	s.build(s.cfg.Nodes)
	base := s.cfg.Nodes - s.cfg.Nodes/10
	warmEnd := s.joinAll(s.net.Peers[:base])
	router := s.routers[:1]
	joined, total := 0, 0
	for _, p := range s.net.Peers[base:] {
		at := warmEnd + time.Duration(s.net.Rand.Int64N(int64(time.Minute)))
		total++
		s.net.At(at, func() {
			s.net.Start(p)
			// A bootstrap that found nobody is tried again, three
			// attempts in all, as the daemon's Bootstrap callers do.
			attempts := 0
			var boot func(c *core.Node, now time.Time)
			boot = func(c *core.Node, now time.Time) {
				attempts++
				c.Bootstrap(now, router, func(r core.Result) {
					switch {
					case len(r.Closest) > 0:
						s.mu.Lock()
						joined++
						s.mu.Unlock()
					case attempts < 3:
						s.net.AtPeer(p, 0, func() { s.net.Do(p, boot) })
					}
				})
			}
			s.net.Do(p, boot)
		})
	}
	s.advance(warmEnd + 2*time.Minute)
	s.measureCost()
	joiners := func(p *Peer) bool { return p.Index >= int32(base) }
	b := s.lookups(s.cfg.Lookups, s.net.Elapsed(), joiners, nil, nil, nil)
	s.finish(b)
	s.summary(b)
	ph := s.phase("from joiners", b)
	ph.JoinedPct = round2(100 * float64(joined) / float64(max(total, 1)))
	s.rep.Phases = []Phase{ph}
}

// partition: the warm network splits in two halves for half an hour, then
// heals. Lookups run during the split (the closest node is the closest on
// the querier's side) and after healing (the closest overall).
func (s *run) partition() {
	s.build(s.cfg.Nodes)
	for _, p := range s.net.Peers {
		p.Group = uint8(s.net.Rand.IntN(2))
	}
	warmEnd := s.joinAll(s.net.Peers)
	s.measureCost()
	const split = 30 * time.Minute
	s.net.Partition(true)
	sameSide := func(src, dst *Peer) bool { return src.Group == dst.Group }
	// Lookups start after the tables have had a chance to notice the split.
	during := s.lookups(s.cfg.Lookups/2, warmEnd+split-measureWindow-time.Minute, nil, nil, sameSide, nil)
	s.advance(warmEnd + split)
	s.finish(during)
	s.net.Partition(false)
	healed := warmEnd + split + 10*time.Minute
	s.advance(healed)
	after := s.lookups(s.cfg.Lookups-s.cfg.Lookups/2, healed, nil, nil, nil, nil)
	s.finish(after)
	s.summary(after)
	s.rep.Phases = []Phase{s.phase("split", during), s.phase("healed", after)}
}
