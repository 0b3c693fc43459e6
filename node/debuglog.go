package node

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// debugLinesPerSecond bounds the per-packet debug lines (each query sent,
// answered or received): a flood must not turn the log into the
// bottleneck. Lines over the bound are counted, and the count is logged
// with the next line allowed.
const debugLinesPerSecond = 20

// debugLines is the rate limit of the per-packet debug lines.
type debugLines struct {
	mu         sync.Mutex
	second     int64 // the unix second the count is for
	used       int
	suppressed int
}

// allow reports whether a line may be logged at now, and how many were
// suppressed since the last one allowed.
func (d *debugLines) allow(now time.Time) (bool, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := now.Unix(); s != d.second {
		d.second, d.used = s, 0
	}
	if d.used >= debugLinesPerSecond {
		d.suppressed++
		return false, 0
	}
	d.used++
	n := d.suppressed
	d.suppressed = 0
	return true, n
}

// debugPacket logs one per-packet line at debug level, within the rate
// limit; it costs one level check when debug is off.
func (n *Node) debugPacket(msg string, args ...any) {
	if !n.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	ok, suppressed := n.dbg.allow(n.clock.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_before", suppressed)
	}
	n.log.Debug(msg, args...)
}
