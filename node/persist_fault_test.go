package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// lockedBuffer is a log destination safe for the node's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dbHealthy reads dhtd_db_healthy from n's registry.
func dbHealthy(t *testing.T, n *Node) float64 {
	t.Helper()
	mfs, err := n.Admin().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "dhtd_db_healthy" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("dhtd_db_healthy not exported")
	return 0
}

// TestPersistRefusedWriteNotKept: once the database fails every write (it
// is closed under the node), a put that would evict an acknowledged item
// and an announce are refused with 202 "storage error"; neither is served,
// the acknowledged item still is, the storage reports unhealthy (Ready,
// dhtd_db_healthy), and the failures take one log line.
func TestPersistRefusedWriteNotKept(t *testing.T) {
	logs := &lockedBuffer{}
	b := startNode(t, func(c *Config) {
		c.DataDir = t.TempDir()
		c.Items.MaxItems = 2
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	c := startNode(t, nil)
	keep := persistPut(t, c, b.Addr(), "4:keep")
	// A second value, which the store has room for (MaxItems 2): only the
	// failing disk refuses it.
	var closer string
	for i := 0; closer == ""; i++ {
		v := fmt.Sprintf("5:c%04d", i)
		if storage.ImmutableTarget([]byte(v)).Xor(b.ID()).Less(keep.Xor(b.ID())) {
			closer = v
		}
	}
	if !b.Stats().StorageHealthy || dbHealthy(t, b) != 1 {
		t.Fatal("storage unhealthy before any failure")
	}

	if err := b.db.Close(); err != nil { // every later write fails
		t.Fatal(err)
	}
	ctx := persistCtx(t)
	want202 := func(err error, what string) {
		t.Helper()
		var ke *krpc.Error
		if !errors.As(err, &ke) || ke.Code != krpc.ErrCodeServer || ke.Msg != "storage error" {
			t.Fatalf("%s: %v, want [202 storage error]", what, err)
		}
	}
	get := func(target krpc.ID) []byte {
		t.Helper()
		r, err := c.query(ctx, b.Addr(), krpc.MethodGet, &krpc.Args{Target: &target})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		return r.R.V
	}
	target := storage.ImmutableTarget([]byte(closer))
	r, err := c.query(ctx, b.Addr(), krpc.MethodGet, &krpc.Args{Target: &target})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err = c.query(ctx, b.Addr(), krpc.MethodPut, &krpc.Args{Token: r.R.Token, V: []byte(closer)})
		want202(err, fmt.Sprintf("put %d", i))
	}
	if v := get(target); v != nil {
		t.Errorf("refused put served: %q", v)
	}
	if v := get(keep); string(v) != "4:keep" {
		t.Errorf("acknowledged item after the refused put: %q, want it still served", v)
	}

	ih := krpc.ID{0xfa}
	gp, err := c.query(ctx, b.Addr(), krpc.MethodGetPeers, &krpc.Args{InfoHash: &ih})
	if err != nil {
		t.Fatal(err)
	}
	port := int64(4000)
	_, err = c.query(ctx, b.Addr(), krpc.MethodAnnouncePeer, &krpc.Args{InfoHash: &ih, Token: gp.R.Token, Port: &port})
	want202(err, "announce_peer")
	if gp, err = c.query(ctx, b.Addr(), krpc.MethodGetPeers, &krpc.Args{InfoHash: &ih}); err != nil || len(gp.R.Values) != 0 {
		t.Errorf("get_peers after the refused announce: %v %v, want no values", gp, err)
	}

	if b.Stats().StorageHealthy || b.Stats().Ready || dbHealthy(t, b) != 0 {
		t.Errorf("failing storage: StorageHealthy %v, Ready %v, dhtd_db_healthy %v; want false, false, 0",
			b.Stats().StorageHealthy, b.Stats().Ready, dbHealthy(t, b))
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for 4 failed writes, want 1:\n%s", n, logs)
	}
}

// TestPersistDamagedDB: a data dir whose database is damaged, emptied or
// removed after a first run. With FailOnCorrupt, New fails with an error
// that says which (errors.Is) and leaves the file as it is; without, it
// logs one ERROR line, keeps the damaged file aside, and starts with the
// node id of the first run (the marker keeps a copy).
func TestPersistDamagedDB(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(path string) error
		want    error
		asideDB bool
	}{
		{"damaged", func(p string) error { return os.WriteFile(p, bytes.Repeat([]byte("damaged!"), 4096), 0o600) }, storage.ErrDBCorrupt, true},
		{"empty", func(p string) error { return os.Truncate(p, 0) }, ErrDataLoss, false},
		{"missing", os.Remove, ErrDataLoss, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			first := startNode(t, func(cfg *Config) { cfg.DataDir = dir })
			id := first.ID()
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, DBFileName)
			if err := c.damage(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)

			cfg := LoopbackConfig()
			cfg.DataDir, cfg.FailOnCorrupt = dir, true
			if n, err := New(cfg); !errors.Is(err, c.want) {
				if err == nil {
					n.Close()
				}
				t.Fatalf("FailOnCorrupt: New = %v, want an error wrapping %v", err, c.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Error("FailOnCorrupt changed the database file")
			}

			logs := &lockedBuffer{}
			n := startNode(t, func(cfg *Config) {
				cfg.DataDir = dir
				cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			if n.ID() != id {
				t.Errorf("id %s after the damage, want the first run's %s", n.ID(), id)
			}
			if got := strings.Count(logs.String(), "level=ERROR"); got != 1 {
				t.Errorf("%d ERROR lines, want 1:\n%s", got, logs)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if (len(aside) == 1) != c.asideDB {
				t.Errorf("moved aside: %q, want one: %v", aside, c.asideDB)
			}
		})
	}
}
