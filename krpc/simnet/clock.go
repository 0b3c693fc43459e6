package simnet

import (
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// Clock is a hybrid krpc.Clock for simulations: virtual time is real time
// plus an offset that only grows.
//
//   - Now returns time.Now() plus the offset.
//   - AfterFunc(d, f) calls f, in its own goroutine, once the virtual time
//     has passed its deadline (creation time + d): after d of real time, or
//     earlier when Advance moves the offset past the deadline. Whichever
//     comes first fires it; it never fires twice.
//   - Advance(d) adds d to the offset and fires every pending timer whose
//     deadline has passed.
//
// So short waits (query timeouts, packet delays on a Network) run in real
// time, while hour-long timers (bucket refresh, peer and item expiry,
// republish, token rotation) are jumped over with Advance instead of being
// waited for. Durations measured with Now include every Advance made in
// between.
//
// A Clock is safe for concurrent use. The zero value is not usable: call
// NewClock.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
	timers map[*clockTimer]struct{} // pending
}

var _ krpc.Clock = (*Clock)(nil)

// NewClock returns a Clock with a zero offset.
func NewClock() *Clock {
	return &Clock{timers: make(map[*clockTimer]struct{})}
}

// Now returns real time plus the offset.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Offset returns the total of every Advance so far.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// AfterFunc calls f in its own goroutine once d of virtual time has passed.
func (c *Clock) AfterFunc(d time.Duration, f func()) krpc.Timer {
	t := &clockTimer{c: c, f: f}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.deadline = time.Now().Add(c.offset + d)
	c.timers[t] = struct{}{}
	// The real timer is created under the lock so that Stop and Advance
	// always see it; its callback takes the lock and so waits for us.
	t.real = time.AfterFunc(d, t.fire)
	return t
}

// Advance moves virtual time forward by d (d <= 0 does nothing) and starts
// every pending timer whose deadline has now passed, each in its own
// goroutine. It does not wait for them.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	now := time.Now().Add(c.offset)
	for t := range c.timers {
		if !t.deadline.After(now) {
			delete(c.timers, t)
			t.real.Stop()
			go t.f()
		}
	}
}

// Pending returns the number of timers neither fired nor stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// clockTimer is one AfterFunc of a Clock. It is pending while it is in
// c.timers; whoever removes it (fire, Advance or Stop) decides its fate.
type clockTimer struct {
	c        *Clock
	f        func()
	deadline time.Time // virtual
	real     *time.Timer
}

// fire runs on the real timer's goroutine.
func (t *clockTimer) fire() {
	t.c.mu.Lock()
	_, pending := t.c.timers[t]
	delete(t.c.timers, t)
	t.c.mu.Unlock()
	if pending {
		t.f()
	}
}

// Stop prevents the call if it has not started; it reports whether it did.
func (t *clockTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if _, pending := t.c.timers[t]; !pending {
		return false
	}
	delete(t.c.timers, t)
	t.real.Stop()
	return true
}
