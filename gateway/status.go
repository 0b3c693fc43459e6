package gateway

import (
	"embed"
	"io/fs"
	"net"
	"net/http"
	"path"
	"time"

	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/routing"
)

//go:embed web openapi.json
var assets embed.FS

// contentSecurityPolicy keeps the page to its own origin: no external
// requests, no inline script.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// statusOut is the document of GET /v1/status, which the status page polls.
type statusOut struct {
	ID        string   `json:"id"`
	Version   string   `json:"version"`
	UptimeS   float64  `json:"uptime_s"`
	Addresses []string `json:"addresses"` // UDP (each family's, the primary first), then this HTTP listener
	BEP42     bep42Out `json:"bep42"`
	Ready     bool     `json:"ready"`
	K         int      `json:"k"`

	Good         int          `json:"good"`
	Questionable int          `json:"questionable"`
	Bad          int          `json:"bad"`
	Buckets      []bucketOut  `json:"buckets"`
	Stored       storedOut    `json:"stored"`
	Lookups      []lookupOut  `json:"recent_lookups"` // newest first
	Gateway      gatewayState `json:"gateway"`
	// Families has one entry per address family the node serves (BEP 32
	// dual stack: one node, socket and routing table each), the primary
	// node (the one of the fields above) first.
	Families []familyOut `json:"families"`
	// History is the last hour of the primary node, oldest first, with
	// ?history=1 only (else null). A dual-stack node also gives each
	// family's under Families.
	History []node.HistorySample `json:"history"`
}

// familyOut is the node of one address family.
type familyOut struct {
	Family       string      `json:"family"` // ipv4 or ipv6
	ID           string      `json:"id"`
	Address      string      `json:"address"` // UDP
	Ready        bool        `json:"ready"`
	Good         int         `json:"good"`
	Questionable int         `json:"questionable"`
	Bad          int         `json:"bad"`
	Buckets      []bucketOut `json:"buckets"`
	// History is this family's last hour, with ?history=1 on a node of
	// more than one family (else absent).
	History []node.HistorySample `json:"history,omitempty"`
}

type bucketOut struct {
	Index        int             `json:"index"`
	Last         bool            `json:"last"`
	Capacity     int             `json:"capacity"` // live nodes when full (routing.BucketInfo)
	Nodes        []statusNodeOut `json:"nodes"`
	Replacements int             `json:"replacements"`
}

type statusNodeOut struct {
	ID    string  `json:"id"`
	Addr  string  `json:"addr"`
	State string  `json:"state"`
	RTTMs float64 `json:"rtt_ms"`
}

type storedOut struct {
	Infohashes int   `json:"infohashes"`
	Peers      int   `json:"peers"`
	Immutable  int   `json:"immutable"`
	Mutable    int   `json:"mutable"`
	ItemBytes  int64 `json:"item_bytes"`
}

type lookupOut struct {
	Kind      string  `json:"kind"`
	Target    string  `json:"target"`
	Outcome   string  `json:"outcome"`
	Start     string  `json:"start"`
	AgeS      float64 `json:"age_s"`
	ElapsedMs float64 `json:"elapsed_ms"`
	Queries   int     `json:"queries"`
	Failed    int     `json:"failed"`
	Closest   int     `json:"closest"`
}

type gatewayState struct {
	LookupsInFlight int `json:"lookups_in_flight"`
	LookupSlots     int `json:"lookup_slots"`
}

// bep42Out is the node's BEP 42 state.
type bep42Out struct {
	// Mode is off, prefer or enforce: "off" unless the node exposes its
	// mode.
	Mode string `json:"mode"`
	// ExternalIP is our address as the network voted it through the BEP 42
	// "ip" field; empty until decided.
	ExternalIP string `json:"external_ip,omitempty"`
	// IDMatches says whether our id is valid for ExternalIP (BEP 42; true
	// for exempt local addresses); absent until ExternalIP is known.
	IDMatches *bool `json:"id_matches_ip,omitempty"`
}

// bep42State is the node's BEP 42 state, from its stats.
func bep42State(st node.Stats) bep42Out {
	out := bep42Out{Mode: st.BEP42.String()}
	if ip := st.ExternalIP; ip.IsValid() {
		match := routing.VerifyID(st.ID, ip)
		out.ExternalIP, out.IDMatches = ip.String(), &match
	}
	return out
}

func (g *Gateway) statusDoc(r *http.Request) statusOut {
	st := g.n.Stats()
	d := g.n.Admin().RoutingSnapshot()
	out := statusOut{
		ID: d.ID, Version: node.Version, UptimeS: st.Uptime.Seconds(),
		Addresses: []string{"udp://" + d.Addr},
		BEP42:     bep42State(st), Ready: st.Ready, K: st.K,
		Good: d.Good, Questionable: d.Quest, Bad: d.Bad,
		Stored: storedOut{
			Infohashes: st.Peers.Infohashes, Peers: st.Peers.Peers,
			Immutable: st.Items.Immutable, Mutable: st.Items.Mutable, ItemBytes: st.Items.Bytes,
		},
		Gateway: gatewayState{LookupsInFlight: len(g.slots), LookupSlots: cap(g.slots)},
	}
	out.Buckets = bucketsOut(d)
	history := r.URL.Query().Get("history") == "1"
	for _, fn := range g.nodes {
		fd, fst := d, st
		if fn != g.n {
			fd, fst = fn.Admin().RoutingSnapshot(), fn.Stats()
			out.Addresses = append(out.Addresses, "udp://"+fd.Addr)
		}
		f := familyOut{
			Family: fst.Family, ID: fd.ID, Address: "udp://" + fd.Addr, Ready: fst.Ready,
			Good: fd.Good, Questionable: fd.Quest, Bad: fd.Bad, Buckets: bucketsOut(fd),
		}
		if history && len(g.nodes) > 1 {
			f.History = fn.Admin().History()
		}
		out.Families = append(out.Families, f)
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		out.Addresses = append(out.Addresses, "http://"+la.String())
	}
	now := time.Now()
	for _, l := range g.n.Admin().RecentLookups() {
		out.Lookups = append(out.Lookups, lookupOut{
			Kind: l.Kind, Target: l.Target, Outcome: l.Outcome,
			Start: l.Start.UTC().Format(time.RFC3339Nano), AgeS: now.Sub(l.Start).Seconds(),
			ElapsedMs: float64(l.Elapsed) / float64(time.Millisecond),
			Queries:   l.Queried, Failed: l.Failed, Closest: l.Closest,
		})
	}
	if out.Lookups == nil {
		out.Lookups = []lookupOut{}
	}
	if history {
		out.History = g.n.Admin().History() // never nil
	}
	return out
}

// bucketsOut is the buckets of a routing dump as /v1/status shows them.
func bucketsOut(d node.RoutingDump) []bucketOut {
	out := make([]bucketOut, 0, len(d.Buckets))
	for _, b := range d.Buckets {
		bo := bucketOut{Index: b.Index, Last: b.Last, Capacity: b.Capacity, Nodes: make([]statusNodeOut, 0, len(b.Nodes)), Replacements: len(b.Replacements)}
		for _, e := range b.Nodes {
			bo.Nodes = append(bo.Nodes, statusNodeOut{ID: e.ID, Addr: e.Addr, State: e.State, RTTMs: float64(e.RTT) / float64(time.Millisecond)})
		}
		out = append(out, bo)
	}
	return out
}

func (g *Gateway) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, g.statusDoc(r))
}

func (g *Gateway) openAPI(w http.ResponseWriter, _ *http.Request) {
	b, err := assets.ReadFile("openapi.json")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "openapi.json: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// page serves the status page.
func (g *Gateway) page(w http.ResponseWriter, r *http.Request) {
	g.serveAsset(w, r, "index.html")
}

// asset serves /ui/{file}: the page's script and style sheet.
func (g *Gateway) asset(w http.ResponseWriter, r *http.Request) {
	g.serveAsset(w, r, r.PathValue("file"))
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

func (g *Gateway) serveAsset(w http.ResponseWriter, _ *http.Request, name string) {
	ct, ok := contentTypes[path.Ext(name)]
	b, err := fs.ReadFile(assets, "web/"+name)
	if !ok || err != nil || path.Base(name) != name {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
