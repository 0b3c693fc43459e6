package node

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TestNewStackFamilies: NewStack takes one address, or one of each family;
// anything else is ErrStackFamilies, before any socket is opened.
func TestNewStackFamilies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		listens []string
	}{
		{"none", nil},
		{"two IPv4", []string{"127.0.0.1:0", "127.0.0.2:0"}},
		{"two IPv6", []string{"[::1]:0", "[::1]:0"}},
		{"three", []string{"127.0.0.1:0", "[::1]:0", "127.0.0.2:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewStack(LoopbackConfig(), tc.listens...)
			if !errors.Is(err, ErrStackFamilies) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("NewStack(%q): %v, want ErrStackFamilies", tc.listens, err)
			}
		})
	}
	if _, err := NewDualStack(LoopbackConfig(), LoopbackConfig()); !errors.Is(err, ErrStackFamilies) {
		t.Fatalf("NewDualStack with two IPv4 configs: %v, want ErrStackFamilies", err)
	}
}

// TestNewStackDualStack (BEP 32): NewStack with an IPv6 and an IPv4
// address starts one node per family, the first primary with the given
// id and data directory, the other in a subdirectory named after its
// family, sharing one registry; they are linked (the IPv6 node answers
// want n4 from the IPv4 node's table); Close closes both.
func TestNewStackDualStack(t *testing.T) {
	if pc, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		pc.Close()
	}
	cfg := LoopbackConfig()
	cfg.ID = krpc.RandomID()
	cfg.DataDir = t.TempDir()
	s, err := NewStack(cfg, "[::1]:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	n6, n4 := s.IPv6(), s.IPv4()
	if n6 == nil || n4 == nil || s.Primary() != n6 || len(s.Nodes()) != 2 || s.Nodes()[1] != n4 {
		t.Fatalf("stack: primary %v, ipv4 %v, ipv6 %v; want the IPv6 node primary", s.Primary().Addr(), n4, n6)
	}
	if n6.Stats().Family != "ipv6" || n4.Stats().Family != "ipv4" {
		t.Fatalf("families %s, %s", n6.Stats().Family, n4.Stats().Family)
	}
	if n6.ID() != cfg.ID || n4.ID() == cfg.ID {
		t.Errorf("ids: primary %s, other %s; want the configured %s on the primary only", n6.ID(), n4.ID(), cfg.ID)
	}
	if n6.Admin().DataDir() != cfg.DataDir || n4.Admin().DataDir() != filepath.Join(cfg.DataDir, "ipv4") {
		t.Errorf("data dirs %q, %q", n6.Admin().DataDir(), n4.Admin().DataDir())
	}
	if n6.Admin().Registry() != n4.Admin().Registry() {
		t.Error("the nodes do not share a registry")
	}

	// A node of each family joins its family's node.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var joined4 krpc.ID
	for _, n := range s.Nodes() {
		c := LoopbackConfig()
		c.Listen, c.Bootstrap = "127.0.0.1:0", []string{n.Addr().String()}
		if n.Stats().Family == "ipv6" {
			c.Listen = "[::1]:0"
		}
		j, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		if err := j.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		if n.Stats().Family == "ipv4" {
			joined4 = j.ID()
		}
	}
	// Linked: the IPv6 node's answer to want n4 comes from the IPv4 table.
	found := false
	for deadline := time.Now().Add(10 * time.Second); !found; time.Sleep(20 * time.Millisecond) { // polling interval: the IPv4 node adds the joiner after pinging it back
		for _, c := range n6.familyTable(false).Closest(joined4, 8) {
			found = found || c.ID == joined4
		}
		if time.Now().After(deadline) {
			t.Fatal("the IPv6 node's view of the IPv4 table lacks the IPv4 joiner")
		}
	}
	if n6.familyTable(false) != n4.table || n4.familyTable(true) != n6.table {
		t.Error("the nodes are not linked")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	// Closed: both databases are released, so a second stack opens them.
	s2, err := NewStack(cfg, "[::1]:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reopening after Close: %v", err)
	}
	s2.Close()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "ipv4")); err != nil {
		t.Errorf("the IPv4 node's data dir: %v", err)
	}
}

// TestStackOf: StackOf wraps running nodes, one or one per family; two of
// one family are ErrStackFamilies.
func TestStackOf(t *testing.T) {
	a, err := New(LoopbackConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := New(LoopbackConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := StackOf(a, b); !errors.Is(err, ErrStackFamilies) {
		t.Fatalf("StackOf(two IPv4 nodes): %v, want ErrStackFamilies", err)
	}
	if b.sibling.Load() != nil {
		t.Fatal("a refused StackOf linked the nodes")
	}
	s, err := StackOf(a)
	if err != nil {
		t.Fatal(err)
	}
	if s.Primary() != a || s.IPv4() != a || s.IPv6() != nil {
		t.Fatalf("StackOf(a): primary %p, ipv4 %p, ipv6 %p", s.Primary(), s.IPv4(), s.IPv6())
	}
}
