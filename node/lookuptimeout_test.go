package node

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TestLookupTimeoutOnNodeClock: Config.LookupTimeout runs on the node's
// clock. The only node a lookup can ask never answers and its query timeout
// is longer than the lookup's, so the (bootstrap) lookup ends when the node's clock
// passes LookupTimeout, not after that much real time.
func TestLookupTimeoutOnNodeClock(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	clock := newStepClock()
	n := startNode(t, func(c *Config) {
		c.Clock = clock
		c.Bootstrap = []string{pc.LocalAddr().String()}
		c.QueryTimeout = 2 * time.Hour
		c.LookupTimeout = time.Hour
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a bound on the test only
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- n.Bootstrap(ctx)
	}()
	// The bootstrap lookup's find_node reaching the silent socket proves
	// the lookup is under way.
	_ = pc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for buf := make([]byte, 1500); ; {
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no find_node from the lookup: %v", err)
		}
		if bytes.Contains(buf[:k], []byte("9:find_node")) {
			break
		}
	}
	clock.Advance(30 * time.Minute)
	select {
	case err := <-errc:
		t.Fatalf("lookup ended after half its timeout of the node's clock: %v", err)
	default:
	}
	clock.Advance(31 * time.Minute)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNoAnswer) {
			t.Errorf("lookup error %v, want ErrNoAnswer", err)
		}
	case <-ctx.Done():
		t.Fatal("lookup still running after its timeout passed on the node's clock")
	}
}

// stepClock is a krpc.Clock that moves only when Advance is called: its
// timers fire, each in its own goroutine, once Advance passes their time.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*stepTimer
}

type stepTimer struct {
	c  *stepClock
	at time.Time
	f  func()
}

func newStepClock() *stepClock { return &stepClock{now: time.Unix(1_800_000_000, 0)} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) AfterFunc(d time.Duration, f func()) krpc.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &stepTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock by d and starts every timer now due.
func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*stepTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			due = append(due, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		go t.f()
	}
}

func (t *stepTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, o := range t.c.timers {
		if o == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}
