package krpc

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// IPLimiterConfig configures an IPLimiter. Zero values mean the documented
// defaults.
type IPLimiterConfig struct {
	// Rate is the sustained number of packets per second one source IP may
	// send. Default 20: well above what a well-behaved client sends one
	// node (libtorrent blocks an IP at 5/s over 10 s, docs/protocol.md, Limits), so that
	// a node we are in the middle of several lookups with is never cut.
	Rate float64
	// Burst is the number of packets a quiet IP may send at once. Default
	// 100.
	Burst float64
	// Slots is the size of the limiter's table (rounded up to a power of
	// two). Default 65536 slots of 16 bytes: 1 MiB, whatever the number of
	// sources.
	Slots int
	// LimitLoopback applies the limit to loopback sources (127.0.0.0/8,
	// ::1, IPv4-mapped or not) too. By default loopback is exempt: many
	// local test or load-tool nodes share 127.0.0.1.
	LimitLoopback bool
}

func (c *IPLimiterConfig) setDefaults() {
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Burst <= 0 {
		c.Burst = 100
	}
	if c.Slots <= 0 {
		c.Slots = 1 << 16
	}
	n := 1
	for n < c.Slots {
		n <<= 1
	}
	c.Slots = n
}

// IPLimiter is a per-source-IP token bucket checked before a packet is
// decoded. Its state is a fixed table of Slots buckets indexed by a keyed
// hash of the IP (a sketch, not a map): a flood from spoofed sources cannot
// grow it, and the key (random per limiter) keeps an attacker from choosing
// IPs that collide with a victim. Two IPs that share a slot share a budget;
// with the default 65536 slots an honest IP shares one with a given
// flooding IP with probability 1/65536. IPv6 sources are limited per /64,
// the unit one host controls.
//
// An IPLimiter is safe for concurrent use.
type IPLimiter struct {
	cfg  IPLimiterConfig
	seed maphash.Seed
	mask uint64

	mu    sync.Mutex
	slots []ipBucket
	off   bool // SetRate with a rate <= 0: every packet is allowed
}

type ipBucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill; 0 for an unused slot
}

// NewIPLimiter returns a limiter with cfg's unset fields defaulted.
func NewIPLimiter(cfg IPLimiterConfig) *IPLimiter {
	cfg.setDefaults()
	l := &IPLimiter{
		cfg:  cfg,
		seed: maphash.MakeSeed(),
		mask: uint64(cfg.Slots - 1),
	}
	l.slots = newBucketTable(l, cfg.Slots)
	return l
}

// Config returns the limiter's configuration with defaults filled in.
func (l *IPLimiter) Config() IPLimiterConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// SetRate changes the rate and burst of a running limiter (a reload of the
// configuration); a rate <= 0 switches it off, a burst <= 0 is 5 x rate.
// Buckets keep their tokens, capped at the new burst on their next packet.
func (l *IPLimiter) SetRate(rate, burst float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.off = rate <= 0
	if l.off {
		return
	}
	if burst <= 0 {
		burst = 5 * rate
	}
	l.cfg.Rate, l.cfg.Burst = rate, burst
}

// Allow reports whether a packet from ip at now is within its budget, and
// takes one token if so.
func (l *IPLimiter) Allow(ip netip.Addr, now time.Time) bool {
	ip = ip.Unmap()
	if !l.cfg.LimitLoopback && ip.IsLoopback() {
		return true
	}
	var key [16]byte
	if ip.Is4() {
		a := ip.As4()
		copy(key[:], a[:])
	} else {
		a := ip.As16()
		copy(key[:8], a[:8]) // the /64
		key[15] = 6
	}
	i := maphash.Bytes(l.seed, key[:]) & l.mask
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.off {
		return true
	}
	b := &l.slots[i]
	if b.last == 0 {
		b.tokens, b.last = l.cfg.Burst, t
	} else if t > b.last {
		b.tokens = min(l.cfg.Burst, b.tokens+float64(t-b.last)*l.cfg.Rate/1e9)
		b.last = t
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ByteBudget is a token bucket of bytes per second: the global budget of
// response bytes a node sends (docs/protocol.md, Limits: libtorrent's
// dht_upload_rate_limit). It is safe for concurrent use.
type ByteBudget struct {
	rate, burst float64

	mu     sync.Mutex
	tokens float64
	last   int64
	off    bool // SetRate with a rate <= 0: every reply fits
}

// SetRate changes the rate and burst of a running budget (a reload of the
// configuration); a rate <= 0 switches it off.
func (b *ByteBudget) SetRate(rate, burst float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.off = rate <= 0
	if !b.off {
		b.rate, b.burst = rate, burst
		b.tokens = min(b.tokens, burst)
	}
}

// NewByteBudget returns a budget of rate bytes per second with a burst of
// burst bytes, full at start.
func NewByteBudget(rate, burst float64) *ByteBudget {
	return &ByteBudget{rate: rate, burst: burst, tokens: burst}
}

// Take reports whether n bytes fit in the budget at now, and spends them if
// so.
func (b *ByteBudget) Take(n int, now time.Time) bool {
	t := now.UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.off {
		return true
	}
	if b.last == 0 {
		b.last = t
	} else if t > b.last {
		b.tokens = min(b.burst, b.tokens+float64(t-b.last)*b.rate/1e9)
		b.last = t
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
