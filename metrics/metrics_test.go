package metrics

import (
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
)

// seriesCount gathers reg and returns the number of series of the named family.
func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	n, err := testutil.GatherAndCount(reg, name)
	if err != nil {
		t.Fatalf("gather %s: %v", name, err)
	}
	return n
}

func TestTwoMetricsCoexist(t *testing.T) {
	reg1, reg2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	m1 := New(reg1, BuildInfo{Version: "1.0"})
	m2 := New(reg2, BuildInfo{Version: "2.0"})

	m1.PacketsReceived.WithLabelValues(krpc.PacketQuery).Add(3)
	m1.TokensIssued.Inc()
	m2.PacketsReceived.WithLabelValues(krpc.PacketQuery).Inc()

	if got := testutil.ToFloat64(m1.PacketsReceived.WithLabelValues(krpc.PacketQuery)); got != 3 {
		t.Errorf("m1 packets received = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m2.PacketsReceived.WithLabelValues(krpc.PacketQuery)); got != 1 {
		t.Errorf("m2 packets received = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m1.TokensIssued); got != 1 {
		t.Errorf("m1 tokens issued = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m2.TokensIssued); got != 0 {
		t.Errorf("m2 tokens issued = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m2.BuildInfo.WithLabelValues("2.0", buildGoVersion(t, reg2))); got != 1 {
		t.Errorf("m2 build info = %v, want 1", got)
	}
}

// buildGoVersion reads the goversion label of dhtd_build_info from reg.
func buildGoVersion(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dhtd_build_info" {
			continue
		}
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			if lp.GetName() == "goversion" {
				return lp.GetValue()
			}
		}
	}
	t.Fatal("dhtd_build_info has no goversion label")
	return ""
}

func TestNewTwiceOnOneRegistryPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	New(reg, BuildInfo{})
}

func TestRuntimeAndProcessCollectorsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	if n := seriesCount(t, reg, "go_goroutines"); n != 1 {
		t.Errorf("go_goroutines series = %d, want 1", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// The process collector only reports where procfs (or an equivalent) exists.
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "process_") {
			return
		}
	}
	t.Log("no process_ metrics on this platform")
}

func TestSeriesPreinitialised(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	want := map[string]int{
		"dhtd_packets_received_total":   len(PacketKinds),
		"dhtd_packets_sent_total":       len(PacketKinds),
		"dhtd_received_bytes_total":     len(PacketKinds),
		"dhtd_sent_bytes_total":         len(PacketKinds),
		"dhtd_packets_dropped_total":    len(DropReasons),
		"dhtd_queries_received_total":   len(Methods),
		"dhtd_errors_sent_total":        len(ErrorCodes),
		"dhtd_queries_sent_total":       len(SentMethods) * len(QueryOutcomes),
		"dhtd_query_rtt_seconds":        len(SentMethods),
		"dhtd_transactions_in_flight":   1,
		"dhtd_lookups_total":            len(LookupKinds) * len(LookupOutcomes),
		"dhtd_lookup_duration_seconds":  len(LookupKinds),
		"dhtd_lookup_queries":           len(LookupKinds),
		"dhtd_tokens_issued_total":      1,
		"dhtd_tokens_rejected_total":    1,
		"dhtd_storage_rejections_total": len(RejectReasons[StorePeer]) + len(RejectReasons[StoreImmutable]) + len(RejectReasons[StoreMutable]),
		"dhtd_db_writes_in_flight":      1,
		"dhtd_db_deletes_dropped_total": 1,
		"dhtd_build_info":               1,
	}
	for name, n := range want {
		if got := seriesCount(t, reg, name); got != n {
			t.Errorf("%s: %d series, want %d", name, got, n)
		}
	}
	if len(DropReasons) != 12 || len(Methods) != 8 || len(ErrorCodes) != 10 {
		t.Errorf("fixed sets changed size: drop %d methods %d codes %d", len(DropReasons), len(Methods), len(ErrorCodes))
	}
}

func TestMetricNamesLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{})
	m.RegisterSources(Sources{
		Table: func() TableStats { return TableStats{} },
		Peers: func() PeerStats { return PeerStats{} },
		Items: func() ItemStats { return ItemStats{} },
		DB:    func() DBStats { return DBStats{} },
	})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "dhtd_") {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
}

func TestMethodLabel(t *testing.T) {
	for _, m := range Methods[:len(Methods)-1] {
		if got := MethodLabel(m); got != m {
			t.Errorf("MethodLabel(%q) = %q, want itself", m, got)
		}
	}
	for _, s := range []string{"", "other", "PING", "ping ", " ping", "find_node\x00", "vote", "get_peers\n"} {
		if got := MethodLabel(s); got != Other {
			t.Errorf("MethodLabel(%q) = %q, want %q", s, got, Other)
		}
	}
}

func TestHostileMethodsKeepSeriesFixed(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{})
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	for i := 0; i < n; i++ {
		b := make([]byte, rng.IntN(64))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		s := string(b)
		got := MethodLabel(s)
		if got != Other {
			t.Fatalf("MethodLabel(%q) = %q, want %q", s, got, Other)
		}
		m.QueriesReceived.WithLabelValues(got).Inc()
	}
	if got := seriesCount(t, reg, "dhtd_queries_received_total"); got != len(Methods) {
		t.Errorf("dhtd_queries_received_total: %d series after hostile input, want %d", got, len(Methods))
	}
	if got := testutil.ToFloat64(m.QueriesReceived.WithLabelValues(Other)); got != n {
		t.Errorf("other = %v, want %d", got, n)
	}
}

func TestErrorCodeLabel(t *testing.T) {
	for _, c := range []int64{201, 202, 203, 204, 205, 206, 207, 301, 302} {
		got := ErrorCodeLabel(c)
		if got != strconv.FormatInt(c, 10) || !slices.Contains(ErrorCodes, got) {
			t.Errorf("ErrorCodeLabel(%d) = %q", c, got)
		}
	}
	for _, c := range []int64{0, -201, 200, 208, 300, 303, 1 << 40, -1 << 63} {
		if got := ErrorCodeLabel(c); got != Other {
			t.Errorf("ErrorCodeLabel(%d) = %q, want %q", c, got, Other)
		}
	}
}

func TestSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{})
	m.RegisterSources(Sources{
		Table: func() TableStats {
			return TableStats{Good: 120, Questionable: 7, Bad: 2, Buckets: 23, Replacements: 40}
		},
		Peers: func() PeerStats {
			return PeerStats{Infohashes: 10, Peers: 55, Bytes: 4096, EvictedInfohashes: 3, EvictedPeers: 9, EvictedPeersBytes: 5, Expired: 11, Refused: 4, Sources: 7, TopSource: 3}
		},
		Items: func() ItemStats {
			return ItemStats{Immutable: 5, Mutable: 6, Bytes: 2048, Evicted: 1, Expired: 2, Sources: 4, TopSource: 8}
		},
		DB: func() DBStats {
			return DBStats{Commits: 12, Writes: 30, WriteErrors: 1, Corrupt: 2, Size: 32768}
		},
	})
	const want = `
# HELP dhtd_routing_nodes Nodes in the routing table, by state.
# TYPE dhtd_routing_nodes gauge
dhtd_routing_nodes{state="bad"} 2
dhtd_routing_nodes{state="good"} 120
dhtd_routing_nodes{state="questionable"} 7
# HELP dhtd_routing_buckets Buckets in the routing table.
# TYPE dhtd_routing_buckets gauge
dhtd_routing_buckets 23
# HELP dhtd_routing_replacements Nodes waiting in the replacement caches.
# TYPE dhtd_routing_replacements gauge
dhtd_routing_replacements 40
# HELP dhtd_peers_stored Peer entries in the announce_peer store.
# TYPE dhtd_peers_stored gauge
dhtd_peers_stored 55
# HELP dhtd_infohashes_stored Infohashes in the announce_peer store.
# TYPE dhtd_infohashes_stored gauge
dhtd_infohashes_stored 10
# HELP dhtd_peer_store_refused_total Announces refused because the peer store was full or the source over its quota.
# TYPE dhtd_peer_store_refused_total counter
dhtd_peer_store_refused_total 4
# HELP dhtd_storage_items BEP 44 items stored, by kind.
# TYPE dhtd_storage_items gauge
dhtd_storage_items{kind="immutable"} 5
dhtd_storage_items{kind="mutable"} 6
# HELP dhtd_storage_bytes Estimated memory held by the stores, by kind.
# TYPE dhtd_storage_bytes gauge
dhtd_storage_bytes{kind="item"} 2048
dhtd_storage_bytes{kind="peer"} 4096
# HELP dhtd_storage_evictions_total Entries evicted to keep the stores within bounds, by kind and reason.
# TYPE dhtd_storage_evictions_total counter
dhtd_storage_evictions_total{kind="infohash",reason="over_share"} 3
dhtd_storage_evictions_total{kind="item",reason="over_share"} 1
dhtd_storage_evictions_total{kind="peer",reason="bytes"} 5
dhtd_storage_evictions_total{kind="peer",reason="infohash_full"} 9
# HELP dhtd_storage_sources Source networks (/24, IPv6 /48) holding stored entries, by kind.
# TYPE dhtd_storage_sources gauge
dhtd_storage_sources{kind="infohash"} 7
dhtd_storage_sources{kind="item"} 4
# HELP dhtd_storage_top_source_entries Entries held by the source network holding the most, by kind (per-source quota: storage MaxPerSource).
# TYPE dhtd_storage_top_source_entries gauge
dhtd_storage_top_source_entries{kind="infohash"} 3
dhtd_storage_top_source_entries{kind="item"} 8
# HELP dhtd_storage_expired_total Entries removed because they aged out, by kind.
# TYPE dhtd_storage_expired_total counter
dhtd_storage_expired_total{kind="item"} 2
dhtd_storage_expired_total{kind="peer"} 11
# HELP dhtd_db_commits_total Write transactions committed to the on-disk store (each one fsync).
# TYPE dhtd_db_commits_total counter
dhtd_db_commits_total 12
# HELP dhtd_db_writes_total Writes to the on-disk store that succeeded; concurrent writes share commits.
# TYPE dhtd_db_writes_total counter
dhtd_db_writes_total 30
# HELP dhtd_db_write_errors_total Writes to the on-disk store that failed.
# TYPE dhtd_db_write_errors_total counter
dhtd_db_write_errors_total 1
# HELP dhtd_db_corrupt_records_total Undecodable records skipped while loading the on-disk store.
# TYPE dhtd_db_corrupt_records_total counter
dhtd_db_corrupt_records_total 2
# HELP dhtd_db_size_bytes Bytes of the on-disk store's data file in use.
# TYPE dhtd_db_size_bytes gauge
dhtd_db_size_bytes 32768
`
	err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"dhtd_routing_nodes", "dhtd_routing_buckets", "dhtd_routing_replacements",
		"dhtd_peers_stored", "dhtd_infohashes_stored", "dhtd_peer_store_refused_total",
		"dhtd_storage_items", "dhtd_storage_bytes", "dhtd_storage_evictions_total", "dhtd_storage_expired_total",
		"dhtd_storage_sources", "dhtd_storage_top_source_entries",
		"dhtd_db_commits_total", "dhtd_db_writes_total", "dhtd_db_write_errors_total", "dhtd_db_corrupt_records_total", "dhtd_db_size_bytes")
	if err != nil {
		t.Error(err)
	}
}

func TestSourcesNilCallbacksSkipped(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{})
	m.RegisterSources(Sources{Table: func() TableStats { return TableStats{Good: 1} }})
	if got := seriesCount(t, reg, "dhtd_routing_nodes"); got != 3 {
		t.Errorf("dhtd_routing_nodes: %d series, want 3", got)
	}
	for _, name := range []string{"dhtd_peers_stored", "dhtd_storage_items", "dhtd_storage_bytes", "dhtd_storage_evictions_total", "dhtd_db_commits_total", "dhtd_db_size_bytes"} {
		if got := seriesCount(t, reg, name); got != 0 {
			t.Errorf("%s: %d series with nil callback, want 0", name, got)
		}
	}

	// Items alone: the shared families carry only the item series.
	reg2 := prometheus.NewRegistry()
	New(reg2, BuildInfo{}).RegisterSources(Sources{Items: func() ItemStats { return ItemStats{Bytes: 1} }})
	if got := seriesCount(t, reg2, "dhtd_storage_bytes"); got != 1 {
		t.Errorf("dhtd_storage_bytes with Items only: %d series, want 1", got)
	}
	if got := seriesCount(t, reg2, "dhtd_routing_nodes"); got != 0 {
		t.Errorf("dhtd_routing_nodes with nil Table: %d series, want 0", got)
	}
}

func TestRegisterSourcesTwicePanics(t *testing.T) {
	m := New(prometheus.NewRegistry(), BuildInfo{})
	m.RegisterSources(Sources{Table: func() TableStats { return TableStats{} }})
	defer func() {
		if recover() == nil {
			t.Error("second RegisterSources did not panic")
		}
	}()
	m.RegisterSources(Sources{Table: func() TableStats { return TableStats{} }})
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{Version: "0.1.0"})
	var ready atomic.Bool
	h := Handler(reg, ready.Load, map[string]http.Handler{
		"/debug/routing": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "table dump")
		}),
	})

	code, body := get(t, h, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, `dhtd_build_info{goversion="`) || !strings.Contains(body, `version="0.1.0"`) {
		t.Errorf("/metrics: %d, body lacks dhtd_build_info:\n%.500s", code, body)
	}
	if !strings.Contains(body, "dhtd_queries_received_total") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks expected families")
	}

	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || body == "" {
		t.Errorf("/readyz before ready = %d %q, want 503", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after ready = %d, want 200", code)
	}
	if code, body := get(t, h, "/debug/routing"); code != http.StatusOK || body != "table dump" {
		t.Errorf("/debug/routing = %d %q", code, body)
	}
	if code, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
}

func TestHandlerNilReadyAndRealServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	srv := httptest.NewServer(Handler(reg, nil, nil))
	defer srv.Close()
	for _, path := range []string{"/readyz", "/healthz", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d, want 200", path, resp.StatusCode)
		}
	}
}

func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{})
	var good atomic.Int64
	m.RegisterSources(Sources{Table: func() TableStats { return TableStats{Good: int(good.Load())} }})
	h := Handler(reg, nil, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				m.QueriesReceived.WithLabelValues(MethodLabel(Methods[i%len(Methods)])).Inc()
				m.QueryRTT.WithLabelValues(MethodPing).Observe(0.01)
				m.TransactionsInFlight.Inc()
				m.TransactionsInFlight.Dec()
				good.Add(1)
			}
		}()
	}
	for s := 0; s < 2; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if code, _ := get(t, h, "/metrics"); code != http.StatusOK {
					t.Errorf("/metrics = %d", code)
					return
				}
			}
		}()
	}
	wg.Wait()
	var total float64
	for _, meth := range Methods {
		total += testutil.ToFloat64(m.QueriesReceived.WithLabelValues(meth))
	}
	if total != 4*500 {
		t.Errorf("queries received = %v, want %d", total, 4*500)
	}
	if got := testutil.ToFloat64(m.TransactionsInFlight); got != 0 {
		t.Errorf("in flight = %v, want 0", got)
	}
}

// TestFamiliesShareRegistry: the two nodes of a dual-stack process register
// on one registry, each series labelled with its family, the runtime
// collectors once.
func TestFamiliesShareRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	m4 := NewWith(reg, BuildInfo{}, Options{Family: "ipv4"})
	m6 := NewWith(reg, BuildInfo{}, Options{Family: "ipv6", NoRuntime: true})
	m4.QueriesReceived.WithLabelValues(MethodPing).Add(2)
	m6.QueriesReceived.WithLabelValues(MethodPing).Add(5)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	goroutines := 0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "go_goroutines":
			goroutines += len(mf.GetMetric())
		case "dhtd_queries_received_total":
			for _, m := range mf.GetMetric() {
				var fam, meth string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "family":
						fam = l.GetValue()
					case "method":
						meth = l.GetValue()
					}
				}
				if meth == MethodPing {
					got[fam] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got["ipv4"] != 2 || got["ipv6"] != 5 || len(got) != 2 {
		t.Fatalf("ping queries by family %v, want ipv4=2 ipv6=5", got)
	}
	if goroutines != 1 {
		t.Fatalf("go_goroutines registered %d times", goroutines)
	}
}

// seriesLabels gathers reg and returns the label sets of the named family's
// series, each as "name=value,name=value" in the order of the metric's labels.
func seriesLabels(t *testing.T, reg *prometheus.Registry, name string) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				parts = append(parts, lp.GetName()+"="+lp.GetValue())
			}
			out[strings.Join(parts, ",")] = true
		}
	}
	return out
}

// TestEveryKRPCLabelHasASeries: every label the transport can report
// (krpc.PacketKinds, DropReasons, QueryOutcomes) has its series from the
// first scrape, so a node resolving its counters from these sets never
// meets a missing one.
func TestEveryKRPCLabelHasASeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	for _, name := range []string{"dhtd_packets_received_total", "dhtd_packets_sent_total", "dhtd_received_bytes_total", "dhtd_sent_bytes_total"} {
		got := seriesLabels(t, reg, name)
		for _, k := range krpc.PacketKinds {
			if !got["kind="+k] {
				t.Errorf("%s{kind=%q} missing", name, k)
			}
		}
	}
	drops := seriesLabels(t, reg, "dhtd_packets_dropped_total")
	for _, r := range krpc.DropReasons {
		if !drops["reason="+r] {
			t.Errorf("dhtd_packets_dropped_total{reason=%q} missing", r)
		}
	}
	sent := seriesLabels(t, reg, "dhtd_queries_sent_total")
	for _, meth := range SentMethods {
		for _, o := range krpc.QueryOutcomes {
			if !sent["method="+meth+",outcome="+o] {
				t.Errorf("dhtd_queries_sent_total{method=%q,outcome=%q} missing", meth, o)
			}
		}
	}
}

// TestNoSeriesForWhatCannotHappen: series exist only for label values that
// something emits: no lookup kind of its own for announce or put, no
// signature or seq refusal of an announce, no salt refusal of an immutable
// put, no drop reason nothing reports.
func TestNoSeriesForWhatCannotHappen(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	cases := []struct{ name, labels string }{
		{"dhtd_lookups_total", "kind=announce,outcome=ok"},
		{"dhtd_lookups_total", "kind=put,outcome=ok"},
		{"dhtd_lookups_total", "kind=sample,outcome=ok"},
		{"dhtd_lookup_duration_seconds", "kind=announce"},
		{"dhtd_storage_rejections_total", "kind=peer,reason=bad_signature"},
		{"dhtd_storage_rejections_total", "kind=peer,reason=seq_too_low"},
		{"dhtd_storage_rejections_total", "kind=peer,reason=too_big"},
		{"dhtd_storage_rejections_total", "kind=immutable,reason=salt_too_big"},
		{"dhtd_storage_rejections_total", "kind=immutable,reason=cas_mismatch"},
		{"dhtd_storage_rejections_total", "kind=mutable,reason=read_only"},
		{"dhtd_packets_dropped_total", "reason=in_flight_limit"},
		{"dhtd_packets_dropped_total", "reason=other"},
		{"dhtd_queries_sent_total", "method=other,outcome=answered"},
		{"dhtd_query_rtt_seconds", "method=other"},
	}
	for _, c := range cases {
		if seriesLabels(t, reg, c.name)[c.labels] {
			t.Errorf("%s{%s} exists, but nothing emits it", c.name, c.labels)
		}
	}
	// And the ones that can happen are there.
	for _, c := range []struct{ name, labels string }{
		{"dhtd_lookups_total", "kind=get,outcome=failed"},
		{"dhtd_storage_rejections_total", "kind=peer,reason=quota"},
		{"dhtd_storage_rejections_total", "kind=mutable,reason=seq_too_low"},
		{"dhtd_packets_dropped_total", "reason=queue_full"},
		{"dhtd_packets_dropped_total", "reason=admission_busy"},
	} {
		if !seriesLabels(t, reg, c.name)[c.labels] {
			t.Errorf("%s{%s} missing", c.name, c.labels)
		}
	}
}
