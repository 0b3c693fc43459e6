package gateway

// The Pkarr relay: PUT and GET /pkarr/{key}, the HTTP API that Pkarr
// clients without UDP (browsers, serverless functions) use to publish and
// resolve signed DNS packets, which live on the DHT as BEP 44 mutable
// items of the key, with no salt.
//
// Body of a PUT and of a 200 GET: the 64-byte Ed25519 signature, the seq
// (microseconds since the epoch) as 8 bytes big-endian, then the DNS
// packet. The signature covers the BEP 44 buffer 3:seqi<seq>e1:v<len>:<packet>
// (BEP 44, "Mutable items").
//
// These routes are the gateway's only cross-origin ones, on purpose: a
// relay exists for browsers. Every answer carries
// Access-Control-Allow-Origin: *, and OPTIONS answers 204. The rate
// limit, body bound, deadline and lookup slots are the other routes'.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// pkarrContentType is what Pkarr relays answer a GET with.
const pkarrContentType = "application/pkarr.org/relays#payload"

// pkarrRoutes are the relay's routes, registered after routes. They are
// the gateway's crossOrigin routes: the Host check, rate limit, body bounds
// and slots apply, the web-page checks do not. The relay answers its own
// OPTIONS (so the preflight of routes is not registered for them).
var pkarrRoutes = []route{
	{"PUT /pkarr/{key}", "pkarr_put", true, crossOrigin, (*Gateway).pkarrPut},
	{"GET /pkarr/{key}", "pkarr_get", true, crossOrigin, (*Gateway).pkarrGet},
	{"OPTIONS /pkarr/{key}", "pkarr_options", false, crossOrigin, (*Gateway).pkarrOptions},
	{"/pkarr/", "unknown", false, crossOrigin, (*Gateway).pkarrOther},
}

// registerPkarr adds the relay's routes to g's mux, each behind
// allowCrossOrigin so that every answer carries the relay's CORS headers.
func (g *Gateway) registerPkarr() {
	for _, rt := range pkarrRoutes {
		g.mux.Handle(rt.pattern, allowCrossOrigin(g.wrap(rt)))
	}
}

// allowCrossOrigin sets the CORS headers before h answers, so that every
// answer carries them, refusals by the rate limit included.
func allowCrossOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Access-Control-Allow-Methods", "GET, PUT, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "Content-Type, If-Match, If-Modified-Since")
		hd.Set("Access-Control-Max-Age", "86400")
		h.ServeHTTP(w, r)
	})
}

func (g *Gateway) pkarrOptions(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}

// pkarrOther answers /pkarr/ paths and methods no relay route matched.
func (g *Gateway) pkarrOther(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/pkarr/")
	if rest == "" || strings.Contains(rest, "/") {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s (want /pkarr/{z-base-32 key})", r.Method, r.URL.Path))
		return
	}
	w.Header().Set("Allow", "GET, PUT, OPTIONS")
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: GET, PUT, OPTIONS)", r.Method, r.URL.Path))
}

// parsePkarrKey reads the {key} path value: 52 z-base-32 characters or 64
// hex characters.
func parsePkarrKey(r *http.Request) (ed25519.PublicKey, *httpError) {
	pub, err := pkarr.ParseKey(r.PathValue("key"))
	if err != nil {
		return nil, badRequest("key: %v", err)
	}
	return pub, nil
}

func (g *Gateway) pkarrPut(w http.ResponseWriter, r *http.Request) {
	pub, herr := parsePkarrKey(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, pkarr.MaxBodyLen+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", mbe.Limit))
		return
	case err != nil:
		writeHTTPError(w, badRequest("body: %v", err))
		return
	case len(body) > pkarr.MaxBodyLen:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes (signature, seq and a packet of at most %d bytes)", pkarr.MaxBodyLen, pkarr.MaxPacketLen))
		return
	}
	var cas *int64
	if im := r.Header.Get("If-Match"); im != "" {
		c, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(im, "W/"), `"`), 10, 64)
		if err != nil || c < 0 {
			writeHTTPError(w, badRequest("If-Match: want the seq the stored packet must have (cas), got %q", im))
			return
		}
		cas = &c
	}
	p, err := pkarr.ParseBody(pub, body)
	switch {
	case errors.Is(err, pkarr.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case err != nil:
		writeHTTPError(w, badRequest("%v", err))
		return
	}
	res, err := g.n.PutSigned(r.Context(), node.SignedPut{Key: pub, Value: p.Value(), Seq: p.Seq, Sig: p.Sig, Cas: cas})
	var newer *int64
	if err == nil {
		newer = newerOnNetwork(res, p)
	}
	switch {
	case newer != nil:
		// Storers that lacked the key took the packet, but readers still
		// get the newer one.
		writeError(w, http.StatusConflict, fmt.Sprintf("put %s seq %d: %v: the network holds seq %d", pkarr.KeyString(pub), p.Seq, node.ErrSeqNotNewer, *newer))
	case err == nil:
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, node.ErrCASMismatch):
		writeReason(w, http.StatusPreconditionFailed, reasonOf(err), err.Error())
	case errors.Is(err, node.ErrSeqNotNewer):
		writeReason(w, http.StatusConflict, reasonOf(err), err.Error())
	case errors.Is(err, node.ErrValueTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, node.ErrBadItem), errors.Is(err, node.ErrInvalidSignature):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		g.lookupFailed(w, r, "put "+res.Target.String(), err)
	}
}

// newerOnNetwork returns the seq of a validly signed record of p's key that
// the put's lookup found and that p does not supersede: a higher seq, or
// the same seq with another packet (BEP 44: storers refuse both with 302).
// It is nil when p is the newest the lookup saw.
func newerOnNetwork(res node.PutResult, p pkarr.SignedPacket) *int64 {
	v := p.Value()
	for _, f := range res.Lookup.Closest {
		if f.Reply == nil {
			continue
		}
		rr := f.Reply.R
		if rr == nil || rr.Seq == nil || len(rr.V) == 0 || rr.K != string(p.PublicKey) {
			continue
		}
		seq := *rr.Seq
		if (seq > p.Seq || (seq == p.Seq && string(rr.V) != string(v))) &&
			storage.VerifyMutable(p.PublicKey, nil, seq, rr.V, []byte(rr.Sig)) {
			return &seq
		}
	}
	return nil
}

// pkarrGet answers the newest valid packet of the key: from the network or
// from this node's own store, whichever has the higher seq.
func (g *Gateway) pkarrGet(w http.ResponseWriter, r *http.Request) {
	pub, herr := parsePkarrKey(r)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	target := storage.MutableTarget(pub, nil)
	res, err := g.n.Get(r.Context(), target, node.GetOptions{})
	var best *pkarr.SignedPacket
	notPkarr := false
	consider := func(it storage.Item) {
		if !it.Mutable || string(it.K) != string(pub) {
			return
		}
		p, perr := pkarr.FromItem(it)
		if perr != nil {
			notPkarr = true
			return
		}
		if best == nil || p.Seq > best.Seq {
			best = &p
		}
	}
	if res.Found {
		consider(res.Item)
	}
	if it, ok := g.n.Admin().StoredItem(target); ok {
		consider(it)
	}
	if best == nil {
		switch {
		case errors.Is(r.Context().Err(), context.DeadlineExceeded), err != nil && !errors.Is(err, node.ErrNotFound):
			g.lookupFailed(w, r, "get "+pkarr.KeyString(pub), err)
		case notPkarr:
			writeError(w, http.StatusNotFound, fmt.Sprintf("get %s: the key's BEP 44 item is not a Pkarr packet", pkarr.KeyString(pub)))
		default:
			writeReason(w, http.StatusNotFound, ReasonNotFound, fmt.Sprintf("get %s: no packet found (%d nodes queried)", pkarr.KeyString(pub), res.Lookup.Queried))
		}
		return
	}
	modified := best.Time().Truncate(time.Second)
	w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
	w.Header().Set("Cache-Control", "no-cache")
	if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !modified.After(ims) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := best.Body()
	w.Header().Set("Content-Type", pkarrContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
