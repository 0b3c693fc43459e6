package node

import (
	"net/netip"
	"sync"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

// idAcceptable reports whether a node with id at ip may be served, added
// and queried under the configured BEP 42 mode: always when the mode is
// off, else when id verifies against ip (routing.VerifyID; local
// addresses exempt, loopback only while LimitLoopback is unset).
func (n *Node) idAcceptable(id krpc.ID, ip netip.Addr) bool {
	if n.cfg.BEP42 != routing.BEP42Enforce {
		return true
	}
	return bep42Verifies(n.cfg.LimitLoopback, id, ip)
}

// bep42Verifies is routing.VerifyID, except that loopback is not exempt
// when limitLoopback is set (tests of BEP 42 on 127.0.0.x).
func bep42Verifies(limitLoopback bool, id krpc.ID, ip netip.Addr) bool {
	if limitLoopback && ip.Unmap().IsLoopback() {
		return routing.MatchesIP(id, ip)
	}
	return routing.VerifyID(id, ip)
}

// idVerifier returns idAcceptable for lookups, or nil when every id is
// acceptable (mode off or prefer), so lookups skip the check.
func (n *Node) idVerifier() func(krpc.ID, netip.Addr) bool {
	if n.cfg.BEP42 != routing.BEP42Enforce {
		return nil
	}
	return n.idAcceptable
}

// idPreference returns, in prefer mode, the test of ids that lookups
// prefer as results (and so as storage targets), else nil.
func (n *Node) idPreference() func(krpc.ID, netip.Addr) bool {
	if n.cfg.BEP42 != routing.BEP42Prefer {
		return nil
	}
	return func(id krpc.ID, ip netip.Addr) bool { return bep42Verifies(n.cfg.LimitLoopback, id, ip) }
}

// Bounds of the external-address voter.
const (
	voterMaxCandidates = 16 // distinct addresses tracked; the least voted goes first
	voterMaxVoters     = 64 // voters remembered per address; more add nothing
)

// ipVoter learns our external IP from the BEP 42 "ip" of responses: each
// responder's subnet (routing.Subnet: a /24 or /64) votes once for the
// address it saw us at, and the address with the most distinct voting
// subnets wins once at least two agree (docs/protocol.md, Limits: libtorrent's ip_voter
// needs >= 2 agreeing votes). Counting subnets, not responders, keeps one
// subnet of Sybils from outvoting the rest. State is bounded by
// voterMaxCandidates x voterMaxVoters.
type ipVoter struct {
	mu    sync.Mutex
	votes map[netip.Addr]map[netip.Prefix]struct{}
}

// vote records that a responder at from saw us at ip, and returns the
// current decision (invalid while undecided).
func (v *ipVoter) vote(from netip.Addr, ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.votes == nil {
		v.votes = make(map[netip.Addr]map[netip.Prefix]struct{})
	}
	if ip.IsValid() && !ip.IsUnspecified() && from.IsValid() {
		set, ok := v.votes[ip]
		if !ok {
			if len(v.votes) >= voterMaxCandidates {
				v.dropWeakest()
			}
			set = make(map[netip.Prefix]struct{})
			v.votes[ip] = set
		}
		if len(set) < voterMaxVoters {
			set[routing.Subnet(from.Unmap())] = struct{}{}
		}
	}
	return v.decidedLocked()
}

// dropWeakest forgets the candidate with the fewest voters; v.mu is held.
func (v *ipVoter) dropWeakest() {
	var weakest netip.Addr
	n := -1
	for ip, set := range v.votes {
		if n < 0 || len(set) < n || (len(set) == n && ip.Less(weakest)) {
			weakest, n = ip, len(set)
		}
	}
	delete(v.votes, weakest)
}

// decidedLocked returns the address with the most voting subnets, if at
// least two; ties go to the lower address so the choice is stable. v.mu is
// held.
func (v *ipVoter) decidedLocked() netip.Addr {
	var best netip.Addr
	n := 1
	for ip, set := range v.votes {
		if len(set) > n || (len(set) == n && n > 1 && ip.Less(best)) {
			best, n = ip, len(set)
		}
	}
	return best
}

// decided returns the current decision (invalid while undecided).
func (v *ipVoter) decided() netip.Addr {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.decidedLocked()
}

// votedIP returns our address as the network sees it, learned from the
// BEP 42 "ip" field of responses by a vote of distinct subnets, and false
// until at least two subnets agree.
func (n *Node) votedIP() (netip.Addr, bool) {
	ip := n.voter.decided()
	return ip, ip.IsValid()
}

// noteExternalIP counts the vote of a response's "ip" (said) and, the first time
// a decision is reached or whenever it changes, logs it, with a warning if
// our id does not match it (BEP 42: such an id is refused by enforcing
// nodes; pin a matching one with --id, or let the node choose one at the
// next start).
func (n *Node) noteExternalIP(from netip.AddrPort, said krpc.CompactAddr) {
	ip := n.voter.vote(from.Addr(), said.AddrPort().Addr())
	if !ip.IsValid() {
		return
	}
	n.mu.Lock()
	changed := ip != n.externalIP
	n.externalIP = ip
	n.mu.Unlock()
	if !changed {
		return
	}
	if routing.VerifyID(n.id, ip) {
		n.log.Info("external address decided", "ip", ip, "bep42_id", "matches")
	} else {
		n.log.Warn("external address decided; node id does not match it (BEP 42)", "ip", ip)
	}
}
