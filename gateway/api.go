package gateway

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// itemIn is the JSON body of POST /v1/immutable and PUT /v1/mutable/{pubkey}.
// The value is given either as v, the hex of its exact bencoding (what is
// hashed and signed), or as value, a string the gateway stores as a
// bencoded byte string ("hello" becomes "5:hello").
type itemIn struct {
	V     *string `json:"v"`
	Value *string `json:"value"`
	Seq   *int64  `json:"seq"` // mutable only
	Sig   *string `json:"sig"` // mutable only: 128 hex characters
	Cas   *int64  `json:"cas"` // mutable only, optional
}

// httpError is an error with the status it answers.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, a ...any) *httpError {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

// decodeBody reads one JSON object into v; unknown fields, trailing data,
// an empty or oversized body are errors.
func decodeBody(r *http.Request, v any) *httpError {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe):
		return badRequest("request body: larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return badRequest("request body: empty, want a JSON object")
	default:
		return badRequest("request body: %v", err)
	}
}

// value returns the bencoded value of an itemIn, checked as BEP 44 checks
// it: canonical bencode (400), at most storage.MaxValueLen bytes (413).
func (in *itemIn) value() ([]byte, *httpError) {
	var v []byte
	switch {
	case in.V != nil && in.Value != nil:
		return nil, badRequest("give either v (hex of the bencoded value) or value (a string), not both")
	case in.V != nil:
		b, err := hex.DecodeString(*in.V)
		if err != nil {
			return nil, badRequest("v: not hex: %v", err)
		}
		v = b
	case in.Value != nil:
		v = krpc.AppendString(nil, *in.Value)
	default:
		return nil, badRequest("missing field: v (hex of the bencoded value) or value (a string)")
	}
	if err := storage.CheckValue(v); errors.Is(err, storage.ErrValueTooBig) {
		return nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("value: %v (BEP 44)", err)}
	} else if err != nil {
		return nil, badRequest("v: %v", err)
	}
	return v, nil
}

// parseHex decodes a path value of n bytes given as 2n hex characters.
func parseHex(name, s string, n int) ([]byte, *httpError) {
	if len(s) != 2*n {
		return nil, badRequest("%s: want %d hex characters, got %d", name, 2*n, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, badRequest("%s: not hex: %v", name, err)
	}
	return b, nil
}

func parseID(name, s string) (krpc.ID, *httpError) {
	b, herr := parseHex(name, s, len(krpc.ID{}))
	if herr != nil {
		return krpc.ID{}, herr
	}
	return krpc.ID(b), nil
}

// parseSalt reads ?salt= (the raw bytes of the string, at most 64).
func parseSalt(r *http.Request) ([]byte, *httpError) {
	salt := []byte(r.URL.Query().Get("salt"))
	if len(salt) > storage.MaxSaltLen {
		return nil, badRequest("salt: %d bytes, at most %d (BEP 44)", len(salt), storage.MaxSaltLen)
	}
	return salt, nil
}

func writeHTTPError(w http.ResponseWriter, e *httpError) { writeError(w, e.code, e.msg) }

// NodeRef is one DHT node in an answer.
type NodeRef struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// NodeRefs lists ns as NodeRefs (an empty list, never null, in JSON).
func NodeRefs(ns []krpc.NodeInfo) []NodeRef {
	out := make([]NodeRef, 0, len(ns))
	for _, n := range ns {
		out = append(out, NodeRef{ID: n.ID.String(), Addr: n.Addr.String()})
	}
	return out
}

// PutResult is the answer of a successful put (POST /v1/immutable, PUT
// /v1/mutable/{pubkey}).
type PutResult struct {
	Target   string    `json:"target"`
	Seq      *int64    `json:"seq,omitempty"`
	StoredAt []NodeRef `json:"stored_at"` // the nodes that accepted the put
	Sent     int       `json:"sent"`      // put queries sent
	Queried  int       `json:"queried"`   // queries of the lookup before it
}

func (g *Gateway) putImmutable(w http.ResponseWriter, r *http.Request) {
	var in itemIn
	if herr := decodeBody(r, &in); herr != nil {
		writeHTTPError(w, herr)
		return
	}
	if in.Seq != nil || in.Sig != nil || in.Cas != nil {
		writeHTTPError(w, badRequest("seq, sig and cas belong to mutable items (PUT /v1/mutable/{pubkey})"))
		return
	}
	v, herr := in.value()
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	res, err := g.n.PutImmutable(r.Context(), v)
	if err != nil {
		g.lookupFailed(w, r, "put "+res.Target.String(), err)
		return
	}
	writeJSON(w, http.StatusOK, PutResult{Target: res.Target.String(), StoredAt: NodeRefs(res.StoredAt), Sent: res.Sent, Queried: res.Lookup.Queried})
}

// Item is the answer of a get (GET /v1/immutable/{target}, GET
// /v1/mutable/{pubkey}).
type Item struct {
	Target  string  `json:"target"`
	V       string  `json:"v"`               // hex of the bencoded value
	Value   *string `json:"value,omitempty"` // the value, if it is a UTF-8 byte string
	PubKey  string  `json:"pubkey,omitempty"`
	Salt    *string `json:"salt,omitempty"`
	Seq     *int64  `json:"seq,omitempty"`
	Sig     string  `json:"sig,omitempty"`
	Count   int     `json:"count"` // nodes that returned this value (and seq)
	Queried int     `json:"queried"`
}

// stringValue returns the string a bencoded byte string holds, if v is one
// and it is UTF-8.
func stringValue(v []byte) *string {
	b, err := krpc.ParseString(v)
	if err != nil || !utf8.Valid(b) {
		return nil
	}
	s := string(b)
	return &s
}

func (g *Gateway) getImmutable(w http.ResponseWriter, r *http.Request) {
	target, herr := parseID("target", r.PathValue("target"))
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	res, err := g.n.Get(r.Context(), target, node.GetOptions{})
	g.answerGet(w, r, target, res, err, func(it storage.Item) bool {
		return !it.Mutable && storage.ImmutableTarget(it.V) == target
	})
}

// answerGet writes a get's answer after checking the item with verify: 404
// (ReasonNotFound) when the network answered without it, 502/504 when it
// did not answer.
func (g *Gateway) answerGet(w http.ResponseWriter, r *http.Request, target krpc.ID, res node.GetResult, err error, verify func(storage.Item) bool) {
	if errors.Is(r.Context().Err(), context.DeadlineExceeded) && !res.Found {
		g.lookupFailed(w, r, "get "+target.String(), err)
		return
	}
	if !res.Found || !verify(res.Item) {
		if err != nil && !errors.Is(err, node.ErrNotFound) {
			g.lookupFailed(w, r, "get "+target.String(), err)
			return
		}
		writeReason(w, http.StatusNotFound, ReasonNotFound, fmt.Sprintf("get %s: no valid item found (%d nodes queried)", target, res.Lookup.Queried))
		return
	}
	out := Item{
		Target: target.String(), V: hex.EncodeToString(res.Item.V), Value: stringValue(res.Item.V),
		Count: res.Count, Queried: res.Lookup.Queried,
	}
	if res.Item.Mutable {
		seq, salt := res.Item.Seq, string(res.Item.Salt)
		out.PubKey, out.Seq, out.Sig, out.Salt = hex.EncodeToString(res.Item.K), &seq, hex.EncodeToString(res.Item.Sig), &salt
	}
	writeJSON(w, http.StatusOK, out)
}

// parseMutableKey reads a mutable item's public key (the {pubkey} path
// value, 64 hex characters) and its salt (?salt=).
func parseMutableKey(r *http.Request) (pub, salt []byte, herr *httpError) {
	if pub, herr = parseHex("pubkey", r.PathValue("pubkey"), ed25519.PublicKeySize); herr != nil {
		return nil, nil, herr
	}
	if salt, herr = parseSalt(r); herr != nil {
		return nil, nil, herr
	}
	return pub, salt, nil
}

func (g *Gateway) getMutable(w http.ResponseWriter, r *http.Request) {
	pub, salt, herr := parseMutableKey(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	target := storage.MutableTarget(pub, salt)
	res, err := g.n.Get(r.Context(), target, node.GetOptions{Salt: salt})
	g.answerGet(w, r, target, res, err, func(it storage.Item) bool {
		return it.Mutable && string(it.K) == string(pub) && storage.VerifyMutable(it.K, salt, it.Seq, it.V, it.Sig)
	})
}

func (g *Gateway) putMutable(w http.ResponseWriter, r *http.Request) {
	pub, salt, herr := parseMutableKey(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	var in itemIn
	if herr := decodeBody(r, &in); herr != nil {
		writeHTTPError(w, herr)
		return
	}
	switch {
	case in.Seq == nil:
		herr = badRequest("missing field: seq")
	case *in.Seq < 0:
		herr = badRequest("seq: %d is negative", *in.Seq)
	case in.Sig == nil:
		herr = badRequest("missing field: sig (the client's signature; the gateway holds no keys)")
	}
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	sig, herr := parseHex("sig", *in.Sig, ed25519.SignatureSize)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	v, herr := in.value()
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	if !storage.VerifyMutable(pub, salt, *in.Seq, v, sig) {
		writeHTTPError(w, badRequest("sig: not a valid signature of (salt, seq, v) by pubkey (BEP 44)"))
		return
	}
	res, err := g.n.PutSigned(r.Context(), node.SignedPut{Key: pub, Salt: salt, Value: v, Seq: *in.Seq, Sig: sig, Cas: in.Cas})
	switch {
	case err == nil:
		seq := res.Seq
		writeJSON(w, http.StatusOK, PutResult{Target: res.Target.String(), Seq: &seq, StoredAt: NodeRefs(res.StoredAt), Sent: res.Sent, Queried: res.Lookup.Queried})
	case errors.Is(err, node.ErrSeqNotNewer), errors.Is(err, node.ErrCASMismatch):
		writeReason(w, http.StatusConflict, reasonOf(err), err.Error())
	case errors.Is(err, node.ErrValueTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, node.ErrBadItem), errors.Is(err, node.ErrInvalidSignature):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		g.lookupFailed(w, r, "put "+res.Target.String(), err)
	}
}

// peersOut is the answer of GET /v1/peers/{infohash}.
type peersOut struct {
	InfoHash  string   `json:"info_hash"`
	Peers     []string `json:"peers"`
	Queried   int      `json:"queried"`
	ElapsedMs int64    `json:"elapsed_ms"`
}

// StreamEnd is the last line of a streamed peers answer.
type StreamEnd struct {
	Done      bool       `json:"done"`
	Peers     int        `json:"peers"`
	Queried   int        `json:"queried"`
	ElapsedMs int64      `json:"elapsed_ms"`
	Error     *ErrorBody `json:"error,omitempty"`
}

func (g *Gateway) getPeers(w http.ResponseWriter, r *http.Request) {
	ih, herr := parseID("infohash", r.PathValue("infohash"))
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	var stream bool
	switch s := r.URL.Query().Get("stream"); s {
	case "", "0", "false":
	case "1", "true":
		stream = true
	default:
		writeHTTPError(w, badRequest("stream: want 1 or 0, got %q", s))
		return
	}
	start := time.Now()
	if !stream {
		res, err := g.n.GetPeers(r.Context(), ih, nil)
		if err != nil || errors.Is(r.Context().Err(), context.DeadlineExceeded) {
			g.lookupFailed(w, r, "get_peers "+ih.String(), err)
			return
		}
		out := peersOut{InfoHash: ih.String(), Peers: make([]string, 0, len(res.Peers)), Queried: res.Lookup.Queried, ElapsedMs: time.Since(start).Milliseconds()}
		for _, p := range res.Peers {
			out.Peers = append(out.Peers, p.String())
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	// Stream: the 200 and the first line go out with the first peer; a
	// lookup that fails before any peer answers like the plain request.
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	begin := func() {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			started = true
		}
	}
	res, err := g.n.GetPeers(r.Context(), ih, func(p netip.AddrPort) {
		// onPeer runs on this goroutine (the lookup's); the server's write
		// timeout bounds a slow reader.
		begin()
		_ = enc.Encode(struct {
			Peer string `json:"peer"`
		}{p.String()})
		_ = rc.Flush()
	})
	timedOut := errors.Is(r.Context().Err(), context.DeadlineExceeded)
	if !started && (err != nil || timedOut) {
		g.lookupFailed(w, r, "get_peers "+ih.String(), err)
		return
	}
	begin()
	end := StreamEnd{Done: true, Peers: len(res.Peers), Queried: res.Lookup.Queried, ElapsedMs: time.Since(start).Milliseconds()}
	switch {
	case timedOut:
		g.m.timeouts.Inc()
		end.Error = &ErrorBody{Message: "timed out"}
	case err != nil:
		end.Error = &ErrorBody{Message: err.Error()}
	}
	_ = enc.Encode(end)
}

// announceOut is the answer of POST /v1/announce/{infohash}.
type announceOut struct {
	InfoHash  string `json:"info_hash"`
	Port      int    `json:"port"`
	Implied   bool   `json:"implied_port"`
	Announced int    `json:"announced"` // announce_peer queries sent
	Accepted  int    `json:"accepted"`
	Queried   int    `json:"queried"`
}

func (g *Gateway) announce(w http.ResponseWriter, r *http.Request) {
	ih, herr := parseID("infohash", r.PathValue("infohash"))
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	q := r.URL.Query()
	implied := q.Get("implied_port") == "1"
	port := 0
	if ps := q.Get("port"); ps != "" || !implied {
		p, err := strconv.Atoi(ps)
		if err != nil || p < 1 || p > 65535 {
			writeHTTPError(w, badRequest("port: want 1..65535 (or implied_port=1), got %q", ps))
			return
		}
		port = p
	}
	res, err := g.n.Announce(r.Context(), ih, node.AnnounceOptions{Port: port, ImpliedPort: implied})
	if err != nil {
		g.lookupFailed(w, r, "announce "+ih.String(), err)
		return
	}
	writeJSON(w, http.StatusOK, announceOut{
		InfoHash: ih.String(), Port: port, Implied: implied,
		Announced: res.Announced, Accepted: res.Accepted, Queried: res.Peers.Lookup.Queried,
	})
}

// nodesAnswer is the answer of GET /v1/nodes/{target}.
type nodesAnswer struct {
	Target    string    `json:"target"`
	Nodes     []NodeRef `json:"nodes"` // closest first
	Queried   int       `json:"queried"`
	ElapsedMs int64     `json:"elapsed_ms"`
}

func (g *Gateway) findNodes(w http.ResponseWriter, r *http.Request) {
	target, herr := parseID("target", r.PathValue("target"))
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	res, err := g.n.FindNode(r.Context(), target)
	if err != nil || errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		g.lookupFailed(w, r, "find_node "+target.String(), err)
		return
	}
	ns := make([]krpc.NodeInfo, 0, len(res.Closest))
	for _, f := range res.Closest {
		ns = append(ns, f.Node)
	}
	writeJSON(w, http.StatusOK, nodesAnswer{Target: target.String(), Nodes: NodeRefs(ns), Queried: res.Queried, ElapsedMs: res.Elapsed.Milliseconds()})
}

// pingOut is the answer of GET /v1/ping.
type pingOut struct {
	ID           string  `json:"id"`
	Addr         string  `json:"addr"`
	Version      string  `json:"version"`
	UptimeS      float64 `json:"uptime_s"`
	Ready        bool    `json:"ready"`
	Good         int     `json:"good"`
	Questionable int     `json:"questionable"`
	Bad          int     `json:"bad"`
}

func (g *Gateway) ping(w http.ResponseWriter, _ *http.Request) {
	st := g.n.Stats()
	writeJSON(w, http.StatusOK, pingOut{
		ID: st.ID.String(), Addr: st.Addr.String(), Version: node.Version, UptimeS: st.Uptime.Seconds(),
		Ready: st.Ready, Good: st.Good, Questionable: st.Questionable, Bad: st.Bad,
	})
}
