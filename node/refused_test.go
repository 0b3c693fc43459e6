package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/fakenode"
	"github.com/dhtd/dhtd/krpc"
)

// refuser is a DHT node on 127.0.0.1 that answers lookups with a token and
// refuses every write (put, announce_peer) with one KRPC error.
func refuser(t *testing.T, id krpc.ID, code int64, msg string) netip.AddrPort {
	t.Helper()
	return fakenode.Refuser(t, id, code, msg).Addr
}

// TestWriteRefusalsNamed: when a node refuses a put or an announce, the
// result names it (address and id) with its error code and message, and
// the error says the same and wraps ErrNotStored.
func TestWriteRefusalsNamed(t *testing.T) {
	id := hqID("refuser")
	const code, msg = 203, "seq without k"
	addr := refuser(t, id, code, msg)
	n := startNode(t, func(c *Config) { c.Bootstrap = []string{addr.String()} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	want := []NodeError{{Node: krpc.NodeInfo{ID: id, Addr: addr}, Code: code, Msg: msg}}
	checkErr := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotStored) {
			t.Fatalf("err %v, want ErrNotStored", err)
		}
		for _, s := range []string{addr.String(), id.String(), strconv.Itoa(code), msg} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %q", err, s)
			}
		}
	}

	res, err := n.PutImmutable(ctx, []byte("5:hello"))
	checkErr(t, err)
	if !slices.Equal(res.RefusedBy, want) || res.Stored != 0 || len(res.StoredAt) != 0 || res.Errors[code] != 1 {
		t.Fatalf("PutImmutable: refused by %v stored %d errors %v; want %v", res.RefusedBy, res.Stored, res.Errors, want)
	}

	ar, err := n.Announce(ctx, krpc.RandomID(), AnnounceOptions{Port: 6881})
	checkErr(t, err)
	if !slices.Equal(ar.RefusedBy, want) || ar.Accepted != 0 || len(ar.StoredAt) != 0 || ar.Announced != 1 {
		t.Fatalf("Announce: refused by %v accepted %d of %d; want %v", ar.RefusedBy, ar.Accepted, ar.Announced, want)
	}
}
