package node

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestHistory: a sample holds the rates since the previous one (packets
// in and out, answers by method) and the table size; the ring keeps at
// most HistoryLen samples. On the simulated network, in virtual time; the
// test takes the samples itself.
func TestHistory(t *testing.T) { synctest.Test(t, testHistory) }

func testHistory(t *testing.T) {
	_, a, b := newPair(t, 17)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // simulated
	defer cancel()
	a.sampleHistory()
	b.sampleHistory() // the bases
	for range 3 {
		if _, _, err := a.Ping(ctx, b.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = a.Get(ctx, b.ID(), GetOptions{}) // a lookup to time
	a.sampleHistory()
	b.sampleHistory()
	ha, hb := a.Admin().History(), b.Admin().History()
	if len(ha) != 1 || len(hb) != 1 {
		t.Fatalf("history lengths %d, %d after two readings, want 1", len(ha), len(hb))
	}
	if s := ha[0]; s.PacketsOut <= 0 || s.PacketsIn <= 0 || s.TableSize < 1 || s.Lookups != 1 || s.LookupP99Ms < s.LookupP50Ms {
		t.Errorf("querier's sample %+v: want packets both ways, b in the table, one lookup", s)
	}
	if s := hb[0]; s.Answers["ping"] <= 0 || s.PacketsIn <= 0 {
		t.Errorf("answerer's sample %+v: want pings answered", s)
	}
	if rs := a.Admin().RecentLookups(); len(rs) == 0 || rs[0].Kind != "get" || rs[0].Outcome != "not_found" {
		t.Errorf("recent lookups %+v: want the get that found nothing marked not_found", rs)
	}
	for range HistoryLen + 5 {
		time.Sleep(HistoryInterval) // a sample covers a span of (virtual) time
		a.sampleHistory()
	}
	if n := len(a.Admin().History()); n != HistoryLen {
		t.Errorf("history holds %d samples, want at most %d", n, HistoryLen)
	}
}
