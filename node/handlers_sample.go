package node

import (
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// maxSamples is the most infohashes a sample_infohashes reply carries: 20 x
// 20 bytes plus 8 nodes keeps it well under 1024 bytes (BEP 51; libtorrent's
// dht_max_infohashes_sample_count).
const maxSamples = 20

// sampleCache is the sample reused until its interval has passed (BEP 51:
// "the sample may be precomputed and reused for interval seconds").
type sampleCache struct {
	at      time.Time
	samples krpc.Samples
}

// handleSampleInfohashes answers sample_infohashes (BEP 51): interval, num,
// samples (always present, even empty) and the nodes closest to target.
func (n *Node) handleSampleInfohashes(from netip.AddrPort, a *krpc.Args) *krpc.Msg {
	if a.Target == nil {
		return errMsg(krpc.ErrCodeProtocol, "sample_infohashes: target missing")
	}
	now := n.clock.Now()
	interval := n.cfg.SampleInterval
	n.mu.Lock()
	c := &n.sample
	// Recompute when the interval has passed, or while the cached sample
	// is short of the maximum (more infohashes may have arrived), as
	// libtorrent does.
	if c.samples == nil || !now.Before(c.at.Add(interval)) || now.Before(c.at) || len(c.samples) < maxSamples {
		c.samples = krpc.Samples(n.peers.Infohashes(maxSamples, now, nil))
		if c.samples == nil {
			c.samples = krpc.Samples{}
		}
		c.at = now
	}
	samples := c.samples
	n.mu.Unlock()

	r := n.nodesFor(*a.Target, a, from)
	if c, capped := n.replyCap(from); capped {
		// amplify.go: as many samples as fit the cap.
		room := (c - 160 - len(r.Nodes)*krpc.CompactNodeLen4 - len(r.Nodes6)*krpc.CompactNodeLen6) / krpc.IDLen
		if room = max(room, 0); len(samples) > room {
			samples = samples[:room]
			n.metrics.RepliesTrimmed.Inc()
		}
	}
	iv := int64(interval / time.Second)
	num := int64(n.peers.Stats().Infohashes)
	r.Interval, r.Num, r.Samples = &iv, &num, &samples
	return &krpc.Msg{R: r}
}

// scrapeFilters builds the BEP 33 seed and peer bloom filters of the peers
// stored for ih in the requester's family (as libtorrent does).
func (n *Node) scrapeFilters(ih krpc.ID, v6 bool, now time.Time) (seeds, peers *krpc.Bloom) {
	seeds, peers = new(krpc.Bloom), new(krpc.Bloom)
	n.peers.Each(ih, now, func(addr netip.AddrPort, seed bool) {
		ip := addr.Addr()
		if (ip.Is6() && !ip.Is4In6()) != v6 {
			return
		}
		if seed {
			seeds.Add(ip)
		} else {
			peers.Add(ip)
		}
	})
	return seeds, peers
}
