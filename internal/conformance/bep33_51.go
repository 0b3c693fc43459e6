package conformance

import (
	"crypto/sha1"
	"net/netip"
	"slices"

	"github.com/dhtd/dhtd/krpc"
)

// bloomHas reports whether the BEP 33 filter f has both bits of ip set
// (BEP 33, Bloom Filters: k = 2, m = 2048, SHA-1 of the address bytes).
func bloomHas(f string, ip netip.Addr) bool {
	if len(f) != 256 {
		return false
	}
	h := sha1.Sum(ip.Unmap().AsSlice())
	for _, i := range []int{int(h[0]) | int(h[1])<<8, int(h[2]) | int(h[3])<<8} {
		i %= 2048
		if f[i/8]&(1<<(i%8)) == 0 {
			return false
		}
	}
	return true
}

// runBEP33 announces one seed and one peer from two IPs and scrapes.
func runBEP33(e *env) {
	if len(e.srcs) < 2 {
		for _, c := range []*Check{cScrapeFilters, cScrapeContent, cNoSeed} {
			e.skip(c, "needs a second source address (--source)")
		}
		return
	}
	seedS, err1 := e.sock(1)
	peerS, err2 := e.sock(2)
	if err1 != nil || err2 != nil {
		for _, c := range []*Check{cScrapeFilters, cScrapeContent, cNoSeed} {
			e.skip(c, "bind: %v %v", err1, err2)
		}
		return
	}
	ih := randomID()
	for _, a := range []struct {
		s    *sock
		seed int
	}{{seedS, 1}, {peerS, 0}} {
		tok, _, err := e.token(a.s, ih)
		if err == nil {
			var r *reply
			r, err = e.announce(a.s, ih, tok, 1, true, dict{"seed": a.seed})
			if err == nil && r.y() != "r" {
				for _, c := range []*Check{cScrapeFilters, cScrapeContent, cNoSeed} {
					e.skip(c, "announce answered with %s", r.describe())
				}
				return
			}
		}
		if err != nil {
			for _, c := range []*Check{cScrapeFilters, cScrapeContent, cNoSeed} {
				e.broken(c, "announce", err)
			}
			return
		}
	}
	_, r, err := e.peers(ih, dict{"scrape": 1})
	if err != nil {
		e.broken(cScrapeFilters, "get_peers scrape=1", err)
		e.broken(cScrapeContent, "get_peers scrape=1", err)
	} else {
		rd, _ := r.r()
		sd, ok1 := rd.str("BFsd")
		pe, ok2 := rd.str("BFpe")
		switch {
		case !ok1 || !ok2:
			e.fail(cScrapeFilters, "scrape of an infohash with a seed and a peer answered with %s, BFsd %v, BFpe %v", r.describe(), ok1, ok2)
			e.skip(cScrapeContent, "no filters")
		case len(sd) != 256 || len(pe) != 256:
			e.fail(cScrapeFilters, "BFsd %d bytes, BFpe %d bytes", len(sd), len(pe))
			e.skip(cScrapeContent, "filters of the wrong size")
		default:
			e.pass(cScrapeFilters, "BFsd and BFpe of 256 bytes")
			if bloomHas(sd, seedS.addr.Addr()) && bloomHas(pe, peerS.addr.Addr()) {
				e.pass(cScrapeContent, "BFsd holds the seed's IP, BFpe the peer's")
			} else {
				e.fail(cScrapeContent, "seed %s in BFsd: %v; peer %s in BFpe: %v", seedS.addr.Addr(),
					bloomHas(sd, seedS.addr.Addr()), peerS.addr.Addr(), bloomHas(pe, peerS.addr.Addr()))
			}
		}
	}
	ps, r, err := e.peers(ih, dict{"noseed": 1})
	if err != nil {
		e.broken(cNoSeed, "get_peers noseed=1", err)
		return
	}
	hasIP := func(ip netip.Addr) bool {
		return slices.ContainsFunc(ps, func(p netip.AddrPort) bool { return p.Addr() == ip })
	}
	switch {
	case hasIP(seedS.addr.Addr()):
		e.fail(cNoSeed, "noseed=1 still lists the seed %s (values %v)", seedS.addr.Addr(), ps)
	case !hasIP(peerS.addr.Addr()):
		e.fail(cNoSeed, "noseed=1 answered with %s and values %v, without the peer %s", r.describe(), ps, peerS.addr.Addr())
	default:
		e.pass(cNoSeed, "the peer listed, the seed left out")
	}
}

// runBEP51 checks sample_infohashes.
func runBEP51(e *env) {
	e.mu.Lock()
	var announced []krpc.ID
	for _, ih := range e.announced {
		if !slices.Contains(announced, ih) {
			announced = append(announced, ih)
		}
	}
	e.mu.Unlock()
	if len(announced) == 0 {
		// Announce one, so the sample has something to hold.
		if s, err := e.sock(1); err == nil {
			ih := randomID()
			if tok, _, err := e.token(s, ih); err == nil && tok != "" {
				if r, err := e.announce(s, ih, tok, 1, true, nil); err == nil && r.y() == "r" {
					announced = append(announced, ih)
				}
			}
		}
	}
	target := randomID()
	r, err := e.ask(e.main, "sample_infohashes", dict{"target": target[:]})
	if err != nil {
		for _, c := range []*Check{cSamples, cSampleNum, cSampleContent} {
			e.broken(c, "sample_infohashes", err)
		}
		return
	}
	rd, isR := r.r()
	samples, ok := rd.str("samples")
	switch {
	case !isR:
		e.fail(cSamples, "answered with %s", r.describe())
	case !ok:
		e.fail(cSamples, "no samples in the reply")
	case len(samples)%20 != 0:
		e.fail(cSamples, "samples is %d bytes, not a multiple of 20", len(samples))
	default:
		e.pass(cSamples, "%d samples", len(samples)/20)
	}
	num, okN := rd.integer("num")
	iv, okI := rd.integer("interval")
	switch {
	case !okN || !okI:
		e.fail(cSampleNum, "num present: %v, interval present: %v", okN, okI)
	case num < 0 || iv < 0 || iv > 21600:
		e.fail(cSampleNum, "num %d, interval %d", num, iv)
	default:
		e.pass(cSampleNum, "num %d, interval %d s", num, iv)
	}
	if !ok || len(samples)%20 != 0 {
		e.skip(cSampleContent, "no usable samples")
		return
	}
	var got []krpc.ID
	for s := samples; len(s) >= 20; s = s[20:] {
		got = append(got, krpc.ID([]byte(s[:20])))
	}
	var missing int
	for _, ih := range announced {
		if !slices.Contains(got, ih) {
			missing++
		}
	}
	switch {
	case len(announced) == 0:
		e.skip(cSampleContent, "no announce was accepted")
	case missing == 0:
		e.pass(cSampleContent, "all %d infohashes announced in this run are sampled", len(announced))
	case okN && int64(len(got)) < num:
		e.skip(cSampleContent, "%d of %d announced infohashes missing, but the sample holds %d of %d", missing, len(announced), len(got), num)
	default:
		e.fail(cSampleContent, "%d of %d announced infohashes missing from a sample that claims to hold all %d", missing, len(announced), num)
	}
}
