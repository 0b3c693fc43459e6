package gateway

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per client address, in a table bounded by max
// entries: a new client in a full table first drops every idle client
// whose bucket has refilled (forgetting it changes nothing), then, if it is
// still full, the least recently seen one.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int

	mu      sync.Mutex
	clients map[netip.Prefix]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, clients: make(map[netip.Prefix]*tokenBucket)}
}

// allow takes a token from key's bucket at now, if there is one.
func (l *limiter) allow(key netip.Prefix, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		b = &tokenBucket{tokens: l.burst, last: now}
		l.clients[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict makes room for one client (mu held).
func (l *limiter) evict(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	var oldestKey netip.Prefix
	var oldest time.Time
	first := true
	for k, b := range l.clients {
		if now.Sub(b.last) >= full {
			delete(l.clients, k)
			continue
		}
		if first || b.last.Before(oldest) {
			oldestKey, oldest, first = k, b.last, false
		}
	}
	if len(l.clients) >= l.max && !first {
		delete(l.clients, oldestKey)
	}
}

func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
