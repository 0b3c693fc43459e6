package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/conformance"
	"github.com/dhtd/dhtd/node/ltnode"
)

// TestAgainstLibtorrent runs the suite against libtorrent 2.0.8
// (python3-libtorrent) on loopback.
func TestAgainstLibtorrent(t *testing.T) {
	ltnode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := ltnode.Start(t, ctx, ltnode.Host)
	rep, err := conformance.Run(ctx, conformance.Config{Target: l.Addr, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	logReport(t, rep)
}
