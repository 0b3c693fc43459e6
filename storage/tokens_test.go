package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

var storeT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// tokenSecretSource returns a deterministic random source for secrets.
func tokenSecretSource(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func storeID(b ...byte) krpc.ID {
	var id krpc.ID
	copy(id[:], b)
	return id
}

func TestTokenCheck(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	ih := storeID(0xaa)
	const p = DefaultTokenRotate
	tests := []struct {
		name    string
		issueAt time.Duration // after storeT0, the start of the first period
		checkAt time.Duration // after storeT0
		ip      string        // Check's IP; "" = the issuing IP, unparsable = invalid Addr
		target  krpc.ID       // Check's target; zero = the issuing infohash
		mangle  func(string) string
		want    bool
	}{
		{name: "same IP and infohash at once", want: true},
		{name: "late in the same period", checkAt: p - time.Nanosecond, want: true},
		{name: "after exactly one rotation", checkAt: p, want: true},
		{name: "one rotation, end of life", checkAt: 2*p - time.Nanosecond, want: true},
		{name: "after two rotations", checkAt: 2 * p, want: false},
		{name: "issued late, just under one period old after two rotations", issueAt: p - time.Second, checkAt: 2*p - time.Nanosecond, want: true},
		{name: "issued late, refused at second rotation", issueAt: p - time.Second, checkAt: 2 * p, want: false},
		{name: "long gap", checkAt: 24 * time.Hour, want: false},
		{name: "IPv4-mapped form of the same IP", ip: "::ffff:192.0.2.1", want: true},
		{name: "another IPv4", ip: "192.0.2.2", want: false},
		{name: "an IPv6", ip: "2001:db8::1", want: false},
		{name: "invalid IP", ip: "not an address", want: false},
		{name: "another infohash", target: storeID(0xab), want: false},
		{name: "one bit flipped", mangle: func(s string) string { b := []byte(s); b[7] ^= 1; return string(b) }, want: false},
		{name: "truncated to 4 bytes", mangle: func(s string) string { return s[:4] }, want: false},
		{name: "one byte too long", mangle: func(s string) string { return s + "x" }, want: false},
		{name: "empty", mangle: func(string) string { return "" }, want: false},
		{name: "SHA-1 length", mangle: func(s string) string { return s + strings.Repeat("\x00", 12) }, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := NewTokens(nil, storeT0)
			tok := tk.Issue(ip, ih, storeT0.Add(tc.issueAt))
			if len(tok) != TokenLen {
				t.Fatalf("Issue returned %d bytes, want %d", len(tok), TokenLen)
			}
			checkIP, target := ip, ih
			if tc.ip != "" {
				checkIP, _ = netip.ParseAddr(tc.ip)
			}
			if tc.target != (krpc.ID{}) {
				target = tc.target
			}
			if tc.mangle != nil {
				tok = tc.mangle(tok)
			}
			if got := tk.Check(tok, checkIP, target, storeT0.Add(tc.checkAt)); got != tc.want {
				t.Errorf("Check = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTokenRotateField(t *testing.T) {
	tests := []struct {
		rotate  time.Duration
		checkAt time.Duration
		want    bool
	}{
		{time.Minute, time.Minute + 59*time.Second, true},
		{time.Minute, 2 * time.Minute, false},
		{0, 9 * time.Minute, true}, // zero = default 5 min
		{0, 10 * time.Minute, false},
		{-time.Minute, 9 * time.Minute, true}, // negative = default
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%v@%v", tc.rotate, tc.checkAt), func(t *testing.T) {
			tk := NewTokens(nil, storeT0)
			tk.Rotate = tc.rotate
			ip := netip.MustParseAddr("2001:db8::7")
			tok := tk.Issue(ip, storeID(1), storeT0)
			if got := tk.Check(tok, ip, storeID(1), storeT0.Add(tc.checkAt)); got != tc.want {
				t.Errorf("Check = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTokenRotationStepwise checks rotations when the clock advances in small
// steps (one rotation at a time) rather than jumping.
func TestTokenRotationStepwise(t *testing.T) {
	tk := NewTokens(nil, storeT0)
	ip := netip.MustParseAddr("198.51.100.9")
	tok := tk.Issue(ip, storeID(9), storeT0.Add(time.Minute))
	for now := storeT0; now.Before(storeT0.Add(20 * time.Minute)); now = now.Add(30 * time.Second) {
		want := now.Before(storeT0.Add(2 * DefaultTokenRotate))
		if got := tk.Check(tok, ip, storeID(9), now); got != want {
			t.Fatalf("at storeT0+%v: Check = %v, want %v", now.Sub(storeT0), got, want)
		}
	}
	if got := tk.Stats().Rotations; got != 3 {
		t.Errorf("Rotations = %d, want 3 (at 5, 10 and 15 min)", got)
	}
}

func TestTokenClockBackwards(t *testing.T) {
	tk := NewTokens(nil, storeT0)
	ip := netip.MustParseAddr("192.0.2.1")
	back := storeT0.Add(-time.Hour)
	tok := tk.Issue(ip, storeID(1), back) // restarts the period at back
	if !tk.Check(tok, ip, storeID(1), back.Add(DefaultTokenRotate)) {
		t.Error("token refused one rotation after a backwards jump")
	}
	if tk.Check(tok, ip, storeID(1), back.Add(2*DefaultTokenRotate)) {
		t.Error("token accepted two rotations after a backwards jump")
	}
}

func TestTokenDeterministicSecrets(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	a := NewTokens(tokenSecretSource(1), storeT0).Issue(ip, storeID(1), storeT0)
	b := NewTokens(tokenSecretSource(1), storeT0).Issue(ip, storeID(1), storeT0)
	c := NewTokens(tokenSecretSource(2), storeT0).Issue(ip, storeID(1), storeT0)
	if a != b {
		t.Errorf("same secret source gave different tokens %x, %x", a, b)
	}
	if a == c {
		t.Errorf("different secret sources gave the same token %x", a)
	}
	// A token from one node is worthless at another.
	if NewTokens(tokenSecretSource(2), storeT0).Check(a, ip, storeID(1), storeT0) {
		t.Error("token accepted by a node with other secrets")
	}
}

type tokenFailingReader struct{}

func (tokenFailingReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

func TestTokenRandFailureFallsBack(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	a := NewTokens(tokenFailingReader{}, storeT0)
	b := NewTokens(tokenFailingReader{}, storeT0)
	if ta, tb := a.Issue(ip, storeID(1), storeT0), b.Issue(ip, storeID(1), storeT0); ta == tb {
		t.Error("two Tokens with a failing source share a secret")
	}
	if got := a.Stats().RandErrors; got != 2 {
		t.Errorf("RandErrors = %d, want 2", got)
	}
}

func TestTokenStats(t *testing.T) {
	tk := NewTokens(nil, storeT0)
	ip := netip.MustParseAddr("192.0.2.1")
	tok := tk.Issue(ip, storeID(1), storeT0)
	tk.Issue(ip, storeID(2), storeT0)
	tk.Check(tok, ip, storeID(1), storeT0)
	tk.Check(tok, ip, storeID(2), storeT0)
	tk.Check("short", ip, storeID(1), storeT0)
	want := TokenStats{Issued: 2, Accepted: 1, Rejected: 2}
	if got := tk.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestTokenStringHidesSecrets(t *testing.T) {
	tk := NewTokens(tokenSecretSource(3), storeT0)
	tk.Issue(netip.MustParseAddr("192.0.2.1"), storeID(1), storeT0)
	want := "Tokens{rotate: 5m0s, issued: 1, accepted: 0, rejected: 0}"
	if got := tk.String(); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		if got := fmt.Sprintf(verb, tk); got != want {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, got, want)
		}
	}
	if got := fmt.Sprintf("%v", struct{ T *Tokens }{tk}); !strings.Contains(got, want) {
		t.Errorf("nested %%v = %q, want it to contain %q", got, want)
	}
}

func TestTokenConcurrent(t *testing.T) {
	tk := NewTokens(nil, storeT0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(g)})
			for i := range 200 {
				now := storeT0.Add(time.Duration(i) * time.Second)
				tok := tk.Issue(ip, storeID(byte(i)), now)
				if !tk.Check(tok, ip, storeID(byte(i)), now) {
					t.Errorf("goroutine %d: fresh token refused at step %d", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := tk.Stats(); s.Issued != 1600 || s.Accepted != 1600 {
		t.Errorf("Stats = %+v, want 1600 issued and accepted", s)
	}
}

func BenchmarkTokenIssue(b *testing.B) {
	tk := NewTokens(nil, storeT0)
	ip := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		tk.Issue(ip, storeID(1), storeT0)
	}
}

func BenchmarkTokenCheck(b *testing.B) {
	tk := NewTokens(nil, storeT0)
	ip := netip.MustParseAddr("192.0.2.1")
	tok := tk.Issue(ip, storeID(1), storeT0)
	b.ReportAllocs()
	for b.Loop() {
		if !tk.Check(tok, ip, storeID(1), storeT0) {
			b.Fatal("token refused")
		}
	}
}
