//go:build linux

package main

// A full disk under `dhtd run`: the data dir is a small tmpfs the test
// mounts (root or CAP_SYS_ADMIN; skipped otherwise).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// mountTmpfs mounts a tmpfs of size (mount(8) syntax) on a new directory
// and returns it; it is unmounted when t ends, after the cleanups
// registered later (the node using it). The test is skipped if mounting
// is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("full-disk test skipped: cannot mount a tmpfs (%v); it needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// waitReady polls /readyz until it answers want (there is no event for a
// change of readiness), failing after e2eWait.
func waitReady(t *testing.T, n *dhtdNode, want int) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		code, body := httpGet(t, n.Metrics, "/readyz")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after %v, want %d", code, body, e2eWait, want)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// TestRunFullDisk fills the disk under a ready node until puts are refused
// with 202 "storage error". Then no refused put is served, every
// acknowledged one still is, /readyz answers 503, dhtd_db_healthy is 0,
// and the errors took at most a couple of log lines. Once the disk has
// room again, the next put succeeds and the node is ready again.
func TestRunFullDisk(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	dir := mountTmpfs(t, "1m")
	n := startNode(t, "--no-bootstrap", "--data-dir", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*e2eWait)
	defer cancel()

	// Two clients that answer pings become good nodes of its table:
	// enough for /readyz.
	c, c2 := newTestClient(t), newTestClient(t)
	for i, cl := range []*testClient{c, c2} {
		if _, err := cl.putImmutable(ctx, n.Addr, []byte(fmt.Sprintf("6:ready%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, n, http.StatusOK)

	const wantRefused = 12
	acked := map[krpc.ID]string{}
	var refused []krpc.ID
	for i := 0; len(refused) < wantRefused; i++ {
		if i == 5000 {
			t.Fatalf("%d puts acknowledged and %d refused on a 1 MiB disk", len(acked), len(refused))
		}
		s := fmt.Sprintf("%04d%s", i, strings.Repeat("x", 900))
		v := fmt.Sprintf("%d:%s", len(s), s)
		target, err := c.putImmutable(ctx, n.Addr, []byte(v))
		var ke *krpc.Error
		switch {
		case err == nil:
			acked[target] = v
		case errors.As(err, &ke) && ke.Code == krpc.ErrCodeServer && ke.Msg == "storage error":
			refused = append(refused, target)
		default:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	t.Logf("%d puts acknowledged, then %d refused with 202 storage error", len(acked), len(refused))

	get := func(target krpc.ID) []byte {
		r, err := c.query(ctx, n.Addr, krpc.MethodGet, &krpc.Args{Target: &target})
		if err != nil {
			t.Fatalf("get %s: %v", target, err)
		}
		return r.R.V
	}
	served := 0
	for _, target := range refused {
		if v := get(target); v != nil {
			served++
		}
	}
	if served > 0 {
		t.Errorf("%d of %d refused puts are served", served, len(refused))
	}
	lost := 0
	for target, v := range acked {
		if string(get(target)) != v {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged puts are no longer served", lost, len(acked))
	}
	if code, body := httpGet(t, n.Metrics, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a full disk: %d %q, want 503", code, body)
	}
	_, exposition := httpGet(t, n.Metrics, "/metrics")
	if v, ok := metricValue(t, exposition, "dhtd_db_healthy", nil); !ok || v != 0 {
		t.Errorf("dhtd_db_healthy = %v (found %v), want 0", v, ok)
	}
	if v, _ := metricValue(t, exposition, "dhtd_db_write_errors_total", nil); v < wantRefused {
		t.Errorf("dhtd_db_write_errors_total = %v, want at least %d", v, wantRefused)
	}
	// One line per 10 s of each kind; the test takes a few seconds.
	logs := n.stderr.String()
	errLines, okLines := strings.Count(logs, "level=ERROR"), strings.Count(logs, "storage writes succeed again")
	if errLines < 1 || errLines > 2 || okLines > 2 {
		t.Errorf("%d ERROR lines and %d recovery lines for %d failed writes, want 1 or 2 of each", errLines, okLines, len(refused))
	}

	// Room again: the next put succeeds and the node is ready again.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=16m,mode=0700"); err != nil {
		t.Fatalf("remount larger: %v", err)
	}
	target, err := c.putImmutable(ctx, n.Addr, []byte("5:again"))
	if err != nil {
		t.Fatalf("put once the disk has room: %v", err)
	}
	if string(get(target)) != "5:again" {
		t.Error("put acknowledged after the disk got room is not served")
	}
	waitReady(t, n, http.StatusOK)
}
