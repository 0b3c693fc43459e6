package routing

import (
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// State is the liveness state of a routing table entry (BEP 5).
type State int

// Node states (BEP 5, docs/protocol.md, Node states).
const (
	// Good: the node answered one of our queries within the good window, or
	// has answered at some time and sent us a query within the window.
	Good State = iota
	// Questionable: no such activity within the good window, or the node
	// has never answered us.
	Questionable
	// Bad: the node failed to answer MaxFailures queries in a row.
	Bad
)

// String returns "good", "questionable" or "bad".
func (s State) String() string {
	switch s {
	case Good:
		return "good"
	case Questionable:
		return "questionable"
	case Bad:
		return "bad"
	}
	return "unknown"
}

// Entry is a copy of what the table knows about one node.
type Entry struct {
	krpc.NodeInfo
	FirstSeen    time.Time     // when the table first learned of the node
	LastResponse time.Time     // last answer to one of our queries; zero if never
	LastQuery    time.Time     // last query the node sent us; zero if never
	Failures     int           // consecutive failed queries since the last answer
	RTT          time.Duration // round-trip time of the last answer; 0 if unknown

	goodWindow  time.Duration
	maxFailures int
}

// Confirmed reports whether the node has ever answered one of our queries,
// i.e. its address is proven.
func (e Entry) Confirmed() bool { return !e.LastResponse.IsZero() }

// State returns the node's state at now (BEP 5, docs/protocol.md, Node states): Bad after
// MaxFailures consecutive failures; Good if it answered us within GoodWindow,
// or answered at some time and queried us within GoodWindow; else
// Questionable. Activity exactly GoodWindow old no longer counts.
func (e Entry) State(now time.Time) State {
	gw, mf := e.goodWindow, e.maxFailures
	if gw <= 0 {
		gw = DefaultGoodWindow
	}
	if mf <= 0 {
		mf = DefaultMaxFailures
	}
	return stateOf(e.Failures, e.LastResponse, e.LastQuery, now, gw, mf)
}

func stateOf(failures int, lastResponse, lastQuery, now time.Time, gw time.Duration, mf int) State {
	switch {
	case failures >= mf:
		return Bad
	case lastResponse.IsZero():
		return Questionable // nodes that never answer are not good (BEP 5)
	case now.Sub(lastResponse) < gw, !lastQuery.IsZero() && now.Sub(lastQuery) < gw:
		return Good
	}
	return Questionable
}

// stamp is a time as the table stores it: nanoseconds since the table's
// base (Table.stamp), 0 for never. Eight bytes where a time.Time takes
// 24: an entry holds four, and a table thousands of entries.
type stamp int64

// baseBefore is how far before the first time a table sees its base lies,
// so that the times it is given (which do not run backwards by days) map
// to positive stamps. Small enough that the base keeps a monotonic reading.
const baseBefore = 1 << 50 // about 13 days

// stamp converts now for storage, setting the base at the first call.
// Differences of stamps are differences of the times (monotonic readings
// included, as time.Time.Sub has it). Caller holds t.mu.
func (t *Table) stamp(now time.Time) stamp {
	if t.base.IsZero() {
		t.base = now.Add(-baseBefore)
	}
	s := stamp(now.Sub(t.base))
	if s == 0 {
		s = 1 // the base itself: a nanosecond off, but not "never"
	}
	return s
}

// time converts a stamp back; never is the zero time.
func (t *Table) time(s stamp) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return t.base.Add(time.Duration(s))
}

// entry is the table's mutable record of one node, live or in a
// replacement cache.
type entry struct {
	// failures and info.ID first: Closest reads only them, from hundreds
	// of entries per query.
	failures     int32
	live         bool // in a bucket's live list, not its replacement cache
	info         krpc.NodeInfo
	firstSeen    stamp
	lastResponse stamp
	lastQuery    stamp
	lastFailure  stamp // when the last query to the node failed
	rtt          time.Duration
}

func (e *entry) confirmed() bool { return e.lastResponse != 0 }

// lastSeen is the latest time we heard from the node in any way.
func (e *entry) lastSeen() stamp {
	s := e.firstSeen // always set
	if e.lastResponse != 0 && e.lastResponse > s {
		s = e.lastResponse
	}
	if e.lastQuery != 0 && e.lastQuery > s {
		s = e.lastQuery
	}
	return s
}

// state is stateOf on stamps; now is the stamp of the current time.
func (e *entry) state(now stamp, cfg *Config) State {
	switch gw := stamp(cfg.GoodWindow); {
	case int(e.failures) >= cfg.MaxFailures:
		return Bad
	case e.lastResponse == 0:
		return Questionable // nodes that never answer are not good (BEP 5)
	case now-e.lastResponse < gw, e.lastQuery != 0 && now-e.lastQuery < gw:
		return Good
	}
	return Questionable
}

func (t *Table) export(e *entry) Entry {
	return Entry{
		NodeInfo:     e.info,
		FirstSeen:    t.time(e.firstSeen),
		LastResponse: t.time(e.lastResponse),
		LastQuery:    t.time(e.lastQuery),
		Failures:     int(e.failures),
		RTT:          e.rtt,
		goodWindow:   t.cfg.GoodWindow,
		maxFailures:  t.cfg.MaxFailures,
	}
}

// normalizeAddr unmaps IPv4-mapped IPv6 addresses so that one UDP endpoint
// has one key.
func normalizeAddr(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// usableAddr reports whether a (normalized) address may enter the table:
// docs/protocol.md, Admission says never to add port 0 or unspecified/0.x.x.x addresses;
// multicast and the IPv4 broadcast address cannot be a node either.
func usableAddr(a netip.AddrPort) bool {
	ip := a.Addr()
	if !a.IsValid() || a.Port() == 0 || ip.IsUnspecified() || ip.IsMulticast() {
		return false
	}
	if ip.Is4() {
		b := ip.As4()
		if b[0] == 0 || b == [4]byte{255, 255, 255, 255} {
			return false
		}
	}
	return true
}

// subnetOf returns the /24 (IPv4) or /64 (IPv6) containing ip, the unit of
// the per-bucket subnet limit (docs/protocol.md, Admission, libtorrent practice).
func subnetOf(ip netip.Addr) netip.Prefix {
	bitsLen := 64
	if ip.Is4() {
		bitsLen = 24
	}
	p, _ := ip.WithZone("").Prefix(bitsLen)
	return p
}
