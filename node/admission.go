package node

import (
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node/core"
)

// Admission to the routing table: a querier is confirmed by a ping before
// it enters the table, on the schedule of core.AdmitQueue (its
// documentation says how), which the protocol core runs on its timer for
// the daemon as for the simulator's nodes. Loopback endpoints (address and
// port) are a unit each unless Config.LimitLoopback is set, so a test
// network on 127.0.0.1 is not served one node at a time.

// admit schedules a confirmation ping to ni, which queried us and which
// the routing table would take (Table.Heard), on the core node that
// handles the query: the handlers run under the driver's lock, where the
// core may be called, and serve sets n.core for them. A
// node whose address proved itself (the amplification guard's owners)
// goes first, as a confirmed entry does.
func (n *Node) admit(ni krpc.NodeInfo, now time.Time) {
	if n.core == nil {
		return // handleQuery called outside the driver (a benchmark of the handlers)
	}
	n.core.Admit(ni, n.owners.has(ni.Addr.Addr(), now), now)
}

// admitDropped counts nodes the schedule had no room for, or dropped
// after waiting too long (core.Config.AdmitDropped).
func (n *Node) admitDropped(k int) {
	n.metrics.PacketsDropped.WithLabelValues(metrics.DropAdmissionBusy).Add(float64(k))
}

// admitTimeout is how long a confirmation ping holds its slot: the
// lookups' short timeout (rttWindow.slowAfter); the core keeps it between
// core.MinAdmitTimeout and QueryTimeout.
func (n *Node) admitTimeout() time.Duration { return n.rtts.slowAfter() }

// admitting returns how many nodes wait for or are sent a confirmation
// ping.
func (n *Node) admitting() int {
	k := 0
	n.srv.Do(func(cn *core.Node, _ time.Time) { k = cn.Admitting() })
	return k
}
