package storage

import (
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TokenLen is the length in bytes of the write tokens issued by Tokens.
// BEP 5 leaves the token opaque ("short"); libtorrent and mainline send 4
// bytes, anacrolix 20. Eight bytes make a blind guess succeed with
// probability 2^-64 while keeping get_peers replies small.
const TokenLen = 8

// DefaultTokenRotate is the secret rotation period used when Tokens.Rotate is
// zero: the BEP 5 reference behaviour ("the secret changes every five
// minutes and tokens up to ten minutes old are accepted").
const DefaultTokenRotate = 5 * time.Minute

// Tokens issues and checks the write tokens of get_peers/announce_peer
// (BEP 5) and get/put (BEP 44).
//
// Scheme: token = the first TokenLen (8) bytes of
//
//	HMAC-SHA256(secret, ip16 ‖ target)
//
// where ip16 is the querier's IP address as 16 bytes (IPv4 as an IPv4-mapped
// IPv6 address, zone dropped) and target is the 20-byte infohash (BEP 5) or
// BEP 44 target. Binding the IP means a token cannot be used by another
// host; the port is deliberately left out because NATs rewrite source ports
// between queries. Binding the target means a token obtained for one
// infohash cannot be replayed to announce another.
//
// Two secrets are live, the current and the previous one. The current one is
// replaced every Rotate (default 5 minutes), so a token is accepted for at
// least Rotate and at most 2*Rotate after it was issued (5-10 minutes, as in
// BEP 5). Rotation is lazy: Issue and Check rotate according to their now
// argument; if more than two periods passed since the last rotation both
// secrets are replaced, invalidating every outstanding token. If now moves
// backwards the current period is restarted at now.
//
// Secrets never leave the value: String, GoString and Format print only the
// counters. A Tokens is safe for concurrent use and must not be copied.
type Tokens struct {
	// Rotate is the secret rotation period; zero or negative means
	// DefaultTokenRotate. Set it before the first Issue or Check.
	Rotate time.Duration

	rand io.Reader

	mu    sync.Mutex
	epoch time.Time // start of the current secret's period
	cur   hash.Hash // HMAC-SHA256 keyed with the current secret
	prev  hash.Hash // HMAC-SHA256 keyed with the previous secret
	msg   [16 + krpc.IDLen]byte
	sum   [sha256.Size]byte

	issued, accepted, rejected, rotations, randErrors atomic.Uint64
}

// TokenStats is a snapshot of the counters of a Tokens.
type TokenStats struct {
	Issued    uint64 // tokens handed out by Issue
	Accepted  uint64 // Check calls that returned true
	Rejected  uint64 // Check calls that returned false (wrong length, IP, target or expired)
	Rotations uint64 // secrets replaced (one per elapsed period, two after a long gap)
	// RandErrors counts secrets for which the configured random source
	// failed; crypto/rand was used for those instead.
	RandErrors uint64
}

// NewTokens returns a Tokens whose two initial secrets are read from rand
// (nil means crypto/rand) and whose first period starts at now. Later secrets
// are read from the same source, under the Tokens' lock; if it fails,
// crypto/rand is used instead and TokenStats.RandErrors is incremented, so a
// broken source can never yield an empty or predictable secret.
func NewTokens(rand io.Reader, now time.Time) *Tokens {
	if rand == nil {
		rand = crand.Reader
	}
	t := &Tokens{rand: rand, epoch: now}
	t.prev = t.newSecret()
	t.cur = t.newSecret()
	return t
}

// newSecret draws a 32-byte secret and returns an HMAC-SHA256 keyed with it.
func (t *Tokens) newSecret() hash.Hash {
	var key [sha256.Size]byte
	if _, err := io.ReadFull(t.rand, key[:]); err != nil {
		t.randErrors.Add(1)
		_, _ = crand.Read(key[:]) // never fails since Go 1.24
	}
	h := hmac.New(sha256.New, key[:])
	clear(key[:])
	return h
}

func (t *Tokens) period() time.Duration {
	if t.Rotate <= 0 {
		return DefaultTokenRotate
	}
	return t.Rotate
}

// rotateLocked brings the secrets up to date with now; t.mu must be held.
func (t *Tokens) rotateLocked(now time.Time) {
	p := t.period()
	d := now.Sub(t.epoch)
	switch {
	case d < 0:
		// Clock went backwards: keep the secrets but restart the period at
		// now, so the current secret lives at most one more period.
		t.epoch = now
	case d < p:
		// Still in the current period.
	case d < 2*p:
		// Exactly one period elapsed: current becomes previous.
		t.prev, t.cur = t.cur, t.newSecret()
		t.epoch = t.epoch.Add(p)
		t.rotations.Add(1)
	default:
		// Two or more periods elapsed: every outstanding token is at least
		// one full period past its 2*p lifetime; replace both.
		t.prev, t.cur = t.newSecret(), t.newSecret()
		t.epoch = now
		t.rotations.Add(2)
	}
}

// macLocked writes the token of (ip, target) under secret h into out;
// t.mu must be held (it uses the shared scratch buffers).
func (t *Tokens) macLocked(h hash.Hash, ip netip.Addr, target *krpc.ID, out *[TokenLen]byte) {
	a := ip.As16() // IPv4 comes out IPv4-mapped; the zone is dropped
	copy(t.msg[:16], a[:])
	copy(t.msg[16:], target[:])
	h.Reset()
	h.Write(t.msg[:])
	copy(out[:], h.Sum(t.sum[:0]))
}

// Issue returns the token (TokenLen raw bytes in a string) that a querier at
// ip must present, before it expires, to write target (BEP 5 get_peers
// reply "token"; BEP 44 get reply "token").
func (t *Tokens) Issue(ip netip.Addr, target krpc.ID, now time.Time) string {
	var tok [TokenLen]byte
	t.mu.Lock()
	t.rotateLocked(now)
	t.macLocked(t.cur, ip, &target, &tok)
	t.mu.Unlock()
	t.issued.Add(1)
	return string(tok[:])
}

// Check reports whether token was issued by Issue for this ip and target
// under the current or the previous secret (BEP 5 announce_peer, BEP 44
// put; a false result is answered with error 203). Tokens of the wrong
// length and invalid addresses are refused. The comparisons are constant-time
// (hmac.Equal).
func (t *Tokens) Check(token string, ip netip.Addr, target krpc.ID, now time.Time) bool {
	if len(token) != TokenLen || !ip.IsValid() {
		t.rejected.Add(1)
		return false
	}
	var got, cur, prev [TokenLen]byte
	copy(got[:], token)
	t.mu.Lock()
	t.rotateLocked(now)
	t.macLocked(t.cur, ip, &target, &cur)
	t.macLocked(t.prev, ip, &target, &prev)
	t.mu.Unlock()
	// Both comparisons always run, so timing does not tell which secret
	// matched.
	okCur := hmac.Equal(got[:], cur[:])
	okPrev := hmac.Equal(got[:], prev[:])
	if okCur || okPrev {
		t.accepted.Add(1)
		return true
	}
	t.rejected.Add(1)
	return false
}

// Stats returns a snapshot of the counters.
func (t *Tokens) Stats() TokenStats {
	return TokenStats{
		Issued:     t.issued.Load(),
		Accepted:   t.accepted.Load(),
		Rejected:   t.rejected.Load(),
		Rotations:  t.rotations.Load(),
		RandErrors: t.randErrors.Load(),
	}
}

// String describes the Tokens without its secrets, e.g.
// "Tokens{rotate: 5m0s, issued: 3, accepted: 2, rejected: 1}".
func (t *Tokens) String() string {
	if t == nil {
		return "Tokens(nil)"
	}
	s := t.Stats()
	return fmt.Sprintf("Tokens{rotate: %v, issued: %d, accepted: %d, rejected: %d}",
		t.period(), s.Issued, s.Accepted, s.Rejected)
}

// GoString is String, so %#v does not dump the secrets either.
func (t *Tokens) GoString() string { return t.String() }

// Format prints String for every verb, so no fmt verb (%d, %x, %+v, ...)
// can reach the secrets through reflection.
func (t *Tokens) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }
