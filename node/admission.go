package node

import (
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node/core"
)

// Admission to the routing table: a querier is confirmed by a ping before
// it enters the table, on the schedule of core.AdmitQueue (its
// documentation says how), which the simulator's nodes run too. Loopback
// endpoints (address and port) are a unit each unless
// Config.LimitLoopback is set, so a test network on 127.0.0.1 is not
// served one node at a time.

// admission is the node's confirmation schedule, its lock, and the
// wake-up of its driver (Node.admitLoop).
type admission struct {
	mu   sync.Mutex
	q    *core.AdmitQueue
	kick chan struct{} // buffered(1): the schedule may have a ping to start
}

func newAdmission(maxActive int) admission {
	return admission{q: core.NewAdmitQueue(maxActive), kick: make(chan struct{}, 1)}
}

// wake asks admitLoop to look at the schedule; it never blocks.
func (a *admission) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// admit schedules a confirmation ping to ni, which queried us and which
// the routing table would take (Table.Heard).
func (n *Node) admit(ni krpc.NodeInfo, now time.Time) {
	class := core.AdmitNew
	if e, ok := n.table.Get(ni.ID); ok && e.Addr == ni.Addr && e.Confirmed() || n.owners.has(ni.Addr.Addr(), now) {
		class = core.AdmitProven
	}
	e := &core.AdmitEntry{Addr: ni.Addr, Subnet: core.FairnessKey(ni.Addr, n.cfg.LimitLoopback), Bucket: int32(n.table.BucketIndex(ni.ID)), Class: class, Heard: now, Queued: now}
	n.adm.mu.Lock()
	dropped := n.adm.q.Offer(e)
	n.adm.mu.Unlock()
	n.admitDropped(dropped)
	n.adm.wake()
}

// admitDropped counts nodes the schedule had no room for.
func (n *Node) admitDropped(k int) {
	if k > 0 {
		n.metrics.PacketsDropped.WithLabelValues(metrics.DropAdmissionBusy).Add(float64(k))
	}
}

// admitLoop is the schedule's driver: woken by admit, by a ping turning
// slow and by a ping ending, it starts the pings the schedule has room
// for, until the node closes. It runs in its own goroutine, counted in
// n.wg; the pings it starts end in callbacks (confirm).
func (n *Node) admitLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.adm.kick:
		}
		for n.ctx.Err() == nil {
			n.adm.mu.Lock()
			e, expired := n.adm.q.Next(n.clock.Now())
			n.adm.mu.Unlock()
			n.admitDropped(expired)
			if e == nil {
				break
			}
			n.confirm(e)
		}
	}
}

// confirm pings e; the answer reaches the table through onResponse. Past
// the short timeout the ping gives its slot up and runs on, to
// QueryTimeout.
func (n *Node) confirm(e *core.AdmitEntry) {
	timer := n.clock.AfterFunc(n.admitTimeout(), func() {
		n.adm.mu.Lock()
		n.adm.q.Slowed(e)
		n.adm.mu.Unlock()
		n.adm.wake()
	})
	done := func(*krpc.Msg, error) {
		timer.Stop()
		n.adm.mu.Lock()
		n.adm.q.Done(e)
		n.adm.mu.Unlock()
		n.adm.wake()
	}
	if _, err := n.queryAsync(n.ctx, e.Addr, krpc.MethodPing, nil, done); err != nil {
		done(nil, err)
	}
}

// admitTimeout is how long a confirmation ping holds its slot: the
// lookups' short timeout (rttWindow.slowAfter), at least core.MinAdmitTimeout
// and at most QueryTimeout.
func (n *Node) admitTimeout() time.Duration {
	return min(n.cfg.QueryTimeout, max(core.MinAdmitTimeout, n.rtts.slowAfter()))
}

// admitting returns how many nodes wait for or are sent a confirmation
// ping.
func (n *Node) admitting() int {
	n.adm.mu.Lock()
	defer n.adm.mu.Unlock()
	return n.adm.q.Len()
}
