package main

// A damaged or lost database under `dhtd run`: one line and exit 1 with
// --on-corrupt fail; with the default (salvage), one ERROR line, the file
// moved aside, and a node that starts with what could be recovered.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// corruptTestID is the node id saved in the filled database.
var corruptTestID = krpc.ID{0xc0, 0x44, 0x5e}

// fillDataDir makes dir look like the data dir of a busy node that ran
// before: the marker, a node id, 200 table nodes and 6,000 items of about
// 900 bytes (a database file of several MiB). It returns the database
// file's bytes.
func fillDataDir(t *testing.T, dir string) []byte {
	t.Helper()
	path := filepath.Join(dir, node.DBFileName)
	db, err := storage.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetNodeID(corruptTestID); err != nil {
		t.Fatal(err)
	}
	var nodes []krpc.NodeInfo
	for i := range 200 {
		nodes = append(nodes, krpc.NodeInfo{ID: krpc.ID{byte(i), 1}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i), 1}), 6881)})
	}
	if err := db.SaveNodes(nodes); err != nil {
		t.Fatal(err)
	}
	const workers, items = 64, 6000
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for i := w; i < items; i += workers {
				v := make([]byte, 880)
				for j := range v {
					v[j] = 'a' + byte(rnd.IntN(26))
				}
				if err := db.PutItem(storage.Item{V: fmt.Appendf(nil, "%d:%s", len(v), v)}, netip.Addr{}, exp); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The marker a dhtd of this version leaves, with its copy of the id.
	marker := fmt.Sprintf("This directory holds a dhtd database.\nnode_id %s\n", corruptTestID)
	if err := os.WriteFile(filepath.Join(dir, node.DataDirMarker), []byte(marker), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunCorruptDatabase: for a database truncated to 0, 1 MiB and 4 MiB,
// bit-flipped with a fixed seed, or missing from a data dir that held one,
// `dhtd run --on-corrupt fail` prints one line and exits 1, leaving the
// file alone; `dhtd run` logs one ERROR line, keeps the damaged file aside
// and starts, with the saved node id where it could be read.
func TestRunCorruptDatabase(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	src := t.TempDir()
	full := fillDataDir(t, src)
	marker, err := os.ReadFile(filepath.Join(src, node.DataDirMarker))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("database of %d bytes", len(full))
	flip := func(seed uint64, n int) func([]byte) []byte {
		return func(b []byte) []byte {
			r := rand.New(rand.NewPCG(seed, 0))
			for range n {
				i := r.IntN(len(b))
				b[i] ^= 1 << r.IntN(8)
			}
			return b
		}
	}
	cases := []struct {
		name   string
		damage func([]byte) []byte // nil: no file at all
		lost   bool                // reported as lost rather than damaged
		keepID bool                // the salvaged node keeps its id (the marker has a copy)
	}{
		{"truncated to 0", func(b []byte) []byte { return b[:0] }, true, true},
		{"truncated to 1 MiB", func(b []byte) []byte { return b[:1<<20] }, false, true},
		{"truncated to 4 MiB", func(b []byte) []byte { return b[:4<<20] }, false, true},
		{"64 bit flips, seed 1", flip(1, 64), false, true},
		{"missing", nil, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			setup := func() string {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, node.DataDirMarker), marker, 0o600); err != nil {
					t.Fatal(err)
				}
				if c.damage != nil {
					if err := os.WriteFile(filepath.Join(dir, node.DBFileName), c.damage(append([]byte(nil), full...)), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				return dir
			}

			// --on-corrupt fail: one line, exit 1, nothing touched.
			dir := setup()
			before, _ := os.ReadFile(filepath.Join(dir, node.DBFileName))
			r := runDhtd(t, "run", "--no-bootstrap", "--listen", "127.0.0.1:0", "--metrics-listen", "",
				"--data-dir", dir, "--on-corrupt", "fail")
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "dhtd: ") {
				t.Fatalf("--on-corrupt fail: exit %d, stderr:\n%s\nwant exit 1 and one line", r.code, r.stderr)
			}
			want := "corrupt database"
			if c.lost {
				want = "database lost"
			}
			if !strings.Contains(lines[0], want) {
				t.Errorf("--on-corrupt fail: %q does not say %q", lines[0], want)
			}
			t.Logf("--on-corrupt fail: exit %d: %s", r.code, lines[0])
			if after, _ := os.ReadFile(filepath.Join(dir, node.DBFileName)); string(after) != string(before) {
				t.Error("--on-corrupt fail changed the database file")
			}

			// Default: one ERROR line, then the node starts.
			dir = setup()
			n := startNode(t, "--no-bootstrap", "--data-dir", dir)
			n.waitLine(`msg="state loaded"`)
			var errLines []string
			for _, l := range strings.Split(n.stderr.String(), "\n") {
				if strings.Contains(l, "level=ERROR") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 {
				t.Fatalf("salvage start: %d ERROR lines, want 1:\n%s", len(errLines), n.stderr)
			}
			t.Logf("salvage start: %s", errLines[0])
			if c.keepID != (n.ID == corruptTestID.String()) {
				t.Errorf("salvage start: node id %s, saved %s; want kept: %v", n.ID, corruptTestID, c.keepID)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, node.DBFileName+".corrupt-*"))
			if wantAside := !c.lost; (len(aside) == 1) != wantAside {
				t.Errorf("files moved aside: %q, want one: %v", aside, wantAside)
			}
		})
	}
}
