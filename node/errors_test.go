package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/fakenode"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// silent is a UDP socket on 127.0.0.1 that reads and never answers.
func silent(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// mute is a DHT node on 127.0.0.1 that answers lookups with a token and
// never answers a write (put, announce_peer).
func mute(t *testing.T, id krpc.ID) netip.AddrPort {
	t.Helper()
	return fakenode.Mute(t, id).Addr
}

// sentinels are the errors of errors.go, for checking that an error
// matches the one it should and none of the others.
var sentinels = map[string]error{
	"ErrNotFound": ErrNotFound, "ErrNoNodes": ErrNoNodes, "ErrNoAnswer": ErrNoAnswer, "ErrRefused": ErrRefused,
}

// onlySentinel fails t unless err matches want and no other sentinel.
func onlySentinel(t *testing.T, what string, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, want)
	}
	for name, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("%s: errors.Is(%q, %s) = %v", what, err, name, got)
		}
	}
}

// TestSentinelErrors: each way a call through the Go API can fail is
// matched by errors.Is with its sentinel, and by no other; the messages
// still say what failed.
func TestSentinelErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A mutable item, signed by the node (PutMutable) or by the caller
	// (PutSigned).
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	v := []byte("5:hello")
	signed := SignedPut{Key: priv.Public().(ed25519.PublicKey), Value: v, Seq: 1, Sig: storage.SignMutable(priv, nil, 1, v)}

	t.Run("no nodes", func(t *testing.T) {
		n := startNode(t, nil) // no bootstrap, empty table
		_, err := n.Get(ctx, krpc.RandomID(), GetOptions{})
		onlySentinel(t, "Get", err, ErrNoNodes)
		_, err = n.FindNode(ctx, krpc.RandomID())
		onlySentinel(t, "FindNode", err, ErrNoNodes)
		_, err = n.PutImmutable(ctx, []byte("5:hello"))
		onlySentinel(t, "PutImmutable", err, ErrNoNodes)
		_, err = n.Announce(ctx, krpc.RandomID(), AnnounceOptions{Port: 6881})
		onlySentinel(t, "Announce", err, ErrNoNodes)
		_, err = n.GetPeers(ctx, krpc.RandomID(), nil)
		onlySentinel(t, "GetPeers", err, ErrNoNodes)
		_, err = n.PutMutable(ctx, priv, v, PutOptions{})
		onlySentinel(t, "PutMutable", err, ErrNoNodes)
		_, err = n.PutSigned(ctx, signed)
		onlySentinel(t, "PutSigned", err, ErrNoNodes)
	})

	t.Run("bad record", func(t *testing.T) {
		n := startNode(t, nil)
		bad := signed
		bad.Sig = bad.Sig[:63]
		_, err := n.PutSigned(ctx, bad)
		onlySentinel(t, "PutSigned", err, nil) // refused before any lookup
		if !errors.Is(err, ErrBadItem) {
			t.Errorf("PutSigned: %v does not wrap ErrBadItem", err)
		}
	})

	t.Run("refused ping", func(t *testing.T) {
		// A node enforcing BEP 42 on loopback answers a random id's
		// ping with error 203.
		strict := startNode(t, func(c *Config) { c.BEP42, c.LimitLoopback = routing.BEP42Enforce, true })
		n := startNode(t, nil)
		_, _, err := n.Ping(ctx, strict.Addr())
		onlySentinel(t, "Ping", err, ErrRefused)
		var ke *krpc.Error
		if !errors.As(err, &ke) || ke.Code != krpc.ErrCodeProtocol {
			t.Errorf("Ping: %v does not carry the KRPC error 203", err)
		}
	})

	t.Run("no answer", func(t *testing.T) {
		quiet := silent(t)
		n := startNode(t, func(c *Config) {
			c.Bootstrap = []string{quiet.String()}
			c.QueryTimeout = 200 * time.Millisecond
		})
		err := n.Bootstrap(ctx)
		onlySentinel(t, "Bootstrap", err, ErrNoAnswer)
		_, err = n.Get(ctx, krpc.RandomID(), GetOptions{})
		onlySentinel(t, "Get", err, ErrNoAnswer)
		_, _, err = n.Ping(ctx, quiet)
		onlySentinel(t, "Ping", err, ErrNoAnswer)
		if !errors.Is(err, krpc.ErrTimeout) {
			t.Errorf("Ping: %v does not wrap krpc.ErrTimeout", err)
		}
	})

	t.Run("no answer to a write", func(t *testing.T) {
		addr := mute(t, hqID("mute"))
		n := startNode(t, func(c *Config) {
			c.Bootstrap = []string{addr.String()}
			c.QueryTimeout = 200 * time.Millisecond
		})
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		res, err := n.PutImmutable(ctx, []byte("5:hello"))
		onlySentinel(t, "PutImmutable", err, ErrNoAnswer)
		if !errors.Is(err, ErrNotStored) || len(res.Unanswered) != 1 {
			t.Errorf("PutImmutable: %v, unanswered %v; want ErrNotStored and the mute node", err, res.Unanswered)
		}
	})

	t.Run("not found", func(t *testing.T) {
		seed := startNode(t, nil)
		n := startNode(t, func(c *Config) { c.Bootstrap = []string{seed.Addr().String()} })
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		target := krpc.RandomID()
		_, err := n.Get(ctx, target, GetOptions{})
		onlySentinel(t, "Get", err, ErrNotFound)
		if want := target.String(); !strings.Contains(err.Error(), want) {
			t.Errorf("Get: %q does not name the target %s", err, want)
		}
	})

	t.Run("refused", func(t *testing.T) {
		id := hqID("refuser")
		addr := refuser(t, id, krpc.ErrCodeServer, "storage full")
		n := startNode(t, func(c *Config) { c.Bootstrap = []string{addr.String()} })
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		_, err := n.PutImmutable(ctx, []byte("5:hello"))
		onlySentinel(t, "PutImmutable", err, ErrRefused)
		if !errors.Is(err, ErrNotStored) {
			t.Errorf("PutImmutable: %v does not wrap ErrNotStored", err)
		}
		_, err = n.Announce(ctx, krpc.RandomID(), AnnounceOptions{Port: 6881})
		onlySentinel(t, "Announce", err, ErrRefused)
		_, err = n.PutMutable(ctx, priv, v, PutOptions{})
		onlySentinel(t, "PutMutable", err, ErrRefused)
		_, err = n.PutSigned(ctx, signed)
		onlySentinel(t, "PutSigned", err, ErrRefused)
	})
}

// TestStoreError: each refusal of storage becomes the KRPC error BEP 44
// (Errors) and BEP 5 give it, with the storage's message, and its metric
// label.
func TestStoreError(t *testing.T) {
	tests := []struct {
		err    error
		code   int64
		msg    string
		reason string
	}{
		{&storage.PutError{Rule: storage.ErrMalformed, Msg: "missing v"}, 203, "missing v", metrics.RejectMalformed},
		{&storage.PutError{Rule: storage.ErrBadToken, Msg: "invalid token"}, 203, "invalid token", metrics.RejectBadToken},
		{&storage.PutError{Rule: storage.ErrValueTooBig, Msg: "message (v field) too big"}, 205, "message (v field) too big", metrics.RejectTooBig},
		{&storage.PutError{Rule: storage.ErrBadSignature, Msg: "invalid signature"}, 206, "invalid signature", metrics.RejectBadSignature},
		{&storage.PutError{Rule: storage.ErrSaltTooBig, Msg: "salt (salt field) too big"}, 207, "salt (salt field) too big", metrics.RejectSaltTooBig},
		{&storage.PutError{Rule: storage.ErrCASMismatch, Msg: "CAS mismatch"}, 301, "CAS mismatch", metrics.RejectCASMismatch},
		{&storage.PutError{Rule: storage.ErrSeqTooLow, Msg: "sequence number less than current"}, 302, "sequence number less than current", metrics.RejectSeqTooLow},
		{fmt.Errorf("put x: %w", storage.ErrQuota), 202, "storage full", metrics.RejectQuota},
		{fmt.Errorf("put x: %w", storage.ErrStoreFull), 202, "storage full", metrics.RejectFull},
		{fmt.Errorf("announce x: %w", storage.ErrInvalidPeer), 203, "invalid peer address", metrics.RejectMalformed},
		{errors.New("disk on fire"), 202, "server error", ""},
	}
	for _, tc := range tests {
		e, reason := core.StoreError(tc.err)
		if e.Code != tc.code || e.Msg != tc.msg || reason != tc.reason {
			t.Errorf("core.StoreError(%v) = %d %q %q, want %d %q %q", tc.err, e.Code, e.Msg, reason, tc.code, tc.msg, tc.reason)
		}
	}
	// What storage's checks return maps the same way.
	e, _ := core.StoreError(storage.CheckValue([]byte("i1ei2e")))
	if e.Code != 203 || e.Msg != "v is not canonical bencoding" {
		t.Errorf("a non-canonical value: %d %q", e.Code, e.Msg)
	}
}
