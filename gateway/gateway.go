// Package gateway serves a node over HTTP: a JSON API under /v1/ (BEP 44
// items, peers, announces, node lookups) and a live status page at /.
//
// Web pages cannot drive it (see package httpguard): a request must name
// the gateway's own address, localhost or Config.AllowedHosts in its Host
// header (421 otherwise, against DNS rebinding); a request a browser marks
// as coming from another origin is refused unless the origin is in
// Config.AllowedOrigins (403), and writes must be application/json (415).
// No answer carries CORS headers, except those of routes that opt in
// (route.access).
//
// Every request is bounded: the body by Config.MaxBodyBytes and
// Config.BodyTimeout, the time by Config.RequestTimeout; the body is read
// whole before the request takes anything scarce. Requests that run a DHT
// lookup then share Config.MaxLookups slots (503 when none is free), and
// each client IP (IPv6: its /64) has a token bucket (429 when empty) whose
// table is bounded by Config.MaxClients. The gateway holds no private keys:
// mutable items arrive signed by the client and are verified before they
// are put.
//
// The gateway adds nothing to what the node will store: values go through
// node.PutImmutable and node.PutSigned, which apply the BEP 44 checks, and
// the storing nodes check again.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/internal/httpguard"
	"github.com/dhtd/dhtd/node"
)

// Defaults of the zero fields of Config.
const (
	DefaultRequestTimeout = 20 * time.Second
	DefaultBodyTimeout    = 5 * time.Second
	DefaultMaxBodyBytes   = 8 << 10
	DefaultMaxLookups     = 8
	DefaultRatePerSecond  = 10
	DefaultRateBurst      = 40
	DefaultMaxClients     = 4096
)

// Config configures a Gateway. Zero values mean the defaults above.
type Config struct {
	// Registry receives the gateway's metrics; nil means the node's
	// registry.
	Registry *prometheus.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// RequestTimeout bounds each request, its lookup included; a lookup cut
	// off by it answers 504.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds request bodies; a larger one answers 400.
	MaxBodyBytes int64
	// BodyTimeout bounds the reading of a request's body, from the time
	// the handler starts (and within RequestTimeout); a body not received
	// by then answers 408. No lookup slot is held meanwhile.
	BodyTimeout time.Duration
	// AllowedHosts are Host header values served besides the address a
	// connection was accepted on and localhost with its port: a name (any
	// port) or name:port. Others answer 421.
	AllowedHosts []string
	// AllowedOrigins are web origins (scheme://host[:port]) whose pages may
	// use the API besides the gateway's own; others answer 403.
	AllowedOrigins []string
	// MaxLookups bounds the requests running a DHT lookup at once; one more
	// answers 503.
	MaxLookups int
	// RatePerSecond and RateBurst are each client IP's token bucket
	// (IPv6 clients are grouped by /64); an empty bucket answers 429.
	RatePerSecond float64
	RateBurst     int
	// MaxClients bounds the rate limiter's table of client IPs; when it is
	// full the least recently seen client is forgotten.
	MaxClients int
	// Now is the rate limiter's clock; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults(n *node.Node) {
	if c.Registry == nil {
		c.Registry = n.Admin().Registry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxLookups <= 0 {
		c.MaxLookups = DefaultMaxLookups
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = DefaultRatePerSecond
	}
	if c.RateBurst <= 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.MaxClients <= 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Gateway is the HTTP handler of one node. Create it with New.
type Gateway struct {
	n       *node.Node   // the primary node: lookups, storage, metrics
	nodes   []*node.Node // every family's node, n first (/v1/status)
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	slots   chan struct{} // lookup slots
	limiter *limiter
	guard   *httpguard.Guard
	m       *gatewayMetrics

	bodiesReading atomic.Int64 // requests reading their body
}

// Access policies of routes towards web pages (package httpguard).
const (
	// sameOrigin: the gateway's own page and clients that are not
	// browsers (the default).
	sameOrigin = httpguard.SameOrigin
	// crossOrigin is the opt-in of a route that any web page may call: its
	// answers carry Access-Control-Allow-Origin: *, an OPTIONS preflight
	// on its path is answered, and Origin, Sec-Fetch-Site and Content-Type
	// are not checked (the handler checks the body's type itself). Host is
	// still checked, and the rate limit, body bounds and slots apply.
	crossOrigin = httpguard.CrossOrigin
)

// route is one endpoint: its ServeMux pattern, its metrics label, whether
// it runs a DHT lookup (and so needs a slot) and its access policy towards
// web pages.
type route struct {
	pattern string
	name    string // a fixed label value (routeNames)
	lookup  bool
	access  httpguard.Access
	h       func(g *Gateway, w http.ResponseWriter, r *http.Request)
}

// routes lists every endpoint; openapi.json documents each /v1 one (a test
// checks that they agree).
var routes = []route{
	{"POST /v1/immutable", "immutable_put", true, sameOrigin, (*Gateway).putImmutable},
	{"GET /v1/immutable/{target}", "immutable_get", true, sameOrigin, (*Gateway).getImmutable},
	{"GET /v1/mutable/{pubkey}", "mutable_get", true, sameOrigin, (*Gateway).getMutable},
	{"PUT /v1/mutable/{pubkey}", "mutable_put", true, sameOrigin, (*Gateway).putMutable},
	{"GET /v1/peers/{infohash}", "peers", true, sameOrigin, (*Gateway).getPeers},
	{"POST /v1/announce/{infohash}", "announce", true, sameOrigin, (*Gateway).announce},
	{"GET /v1/nodes/{target}", "nodes", true, sameOrigin, (*Gateway).findNodes},
	{"GET /v1/ping", "ping", false, sameOrigin, (*Gateway).ping},
	{"GET /v1/status", "status", false, sameOrigin, (*Gateway).status},
	{"GET /v1/openapi.json", "openapi", false, sameOrigin, (*Gateway).openAPI},
	{"GET /{$}", "page", false, sameOrigin, (*Gateway).page},
	{"GET /ui/{file}", "page", false, sameOrigin, (*Gateway).asset},
	{"/v1/", "unknown", false, sameOrigin, (*Gateway).notFound},
}

// NewStack returns the gateway of a dual-stack node (BEP 32): lookups and
// storage go through s.Primary(), and /v1/status and the status page show
// every family's node. It registers the metrics as New does.
func NewStack(s *node.Stack, cfg Config) (*Gateway, error) {
	g, err := New(s.Primary(), cfg)
	if err != nil {
		return nil, err
	}
	g.nodes = s.Nodes()
	return g, nil
}

// New returns the gateway of n and registers its metrics on cfg.Registry
// (an error if they are registered there already).
func New(n *node.Node, cfg Config) (*Gateway, error) {
	cfg.setDefaults(n)
	guard, err := httpguard.New(httpguard.Policy{AllowedHosts: cfg.AllowedHosts, AllowedOrigins: cfg.AllowedOrigins})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{
		n: n, nodes: []*node.Node{n}, cfg: cfg, log: cfg.Logger,
		mux:     http.NewServeMux(),
		slots:   make(chan struct{}, cfg.MaxLookups),
		limiter: newLimiter(cfg.RatePerSecond, cfg.RateBurst, cfg.MaxClients),
		guard:   guard,
	}
	m, err := newMetrics(cfg.Registry, g)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	g.m = m
	for _, rt := range routes {
		g.mux.Handle(rt.pattern, g.wrap(rt))
	}
	for path, methods := range preflights(routes) {
		g.mux.Handle("OPTIONS "+path, g.preflight(methods))
	}
	g.registerPkarr()
	return g, nil
}

// preflights maps the path of every crossOrigin route to the methods the
// crossOrigin routes on it accept, for the CORS preflight.
func preflights(rs []route) map[string]string {
	out := map[string]string{}
	for _, rt := range rs {
		method, path, ok := strings.Cut(rt.pattern, " ")
		if rt.access != crossOrigin || !ok {
			continue
		}
		if out[path] != "" {
			method = out[path] + ", " + method
		}
		out[path] = method
	}
	return out
}

// preflight answers a CORS preflight of a crossOrigin route: 204 with the
// methods, after the Host check.
func (g *Gateway) preflight(methods string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ref := g.guard.Check(r, crossOrigin); ref != nil {
			g.m.refused.WithLabelValues(ref.Reason).Inc()
			writeError(w, ref.Status, ref.Msg)
			return
		}
		httpguard.SetCORS(w, r, methods)
		w.WriteHeader(http.StatusNoContent)
	})
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Server returns an http.Server for the gateway with header, read, write
// and idle timeouts derived from Config.RequestTimeout.
func (g *Gateway) Server() *http.Server {
	return &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      g.cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// wrap applies, in order: the Host, Origin, Sec-Fetch-Site and
// Content-Type checks of the route's access policy, the per-IP rate limit,
// the request deadline, the reading of the whole body (bounded in size and
// time) and, for lookups, a slot.
func (g *Gateway) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { g.m.requests.WithLabelValues(rt.name, codeLabel(sw.code)).Inc() }()
		w = sw
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if ref := g.guard.Check(r, rt.access); ref != nil {
			g.m.refused.WithLabelValues(ref.Reason).Inc()
			writeError(w, ref.Status, ref.Msg)
			return
		}
		if rt.access == crossOrigin {
			httpguard.SetCORS(w, r, "")
		}
		if !g.limiter.allow(clientKey(r.RemoteAddr), g.cfg.Now()) {
			g.m.rateLimited.Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "rate limit: too many requests from this address")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		if herr := g.readBody(w, r); herr != nil {
			writeHTTPError(w, herr)
			return
		}
		if rt.lookup {
			select {
			case g.slots <- struct{}{}:
				defer func() { <-g.slots }()
			default:
				g.m.lookupsRejected.Inc()
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("busy: %d lookups already running", cap(g.slots)))
				return
			}
		}
		rt.h(g, w, r)
	})
}

// readBody reads r's whole body, at most Config.MaxBodyBytes, by
// Config.BodyTimeout (or the request's deadline, if sooner), and replaces
// r.Body with what it read, so that a slow client holds nothing scarce.
// A body that fails closes the connection after the answer, so the server
// does not wait for the rest of it.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) *httpError {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	// A ResponseWriter without deadlines (a test recorder) answers
	// ErrNotSupported: then the server's ReadTimeout is the only bound.
	rc := http.NewResponseController(w)
	g.bodiesReading.Add(1)
	defer g.bodiesReading.Add(-1)
	deadline := time.Now().Add(g.cfg.BodyTimeout)
	if d, ok := r.Context().Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = rc.SetReadDeadline(deadline)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{}) // the body is in; nothing more to bound
		r.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	w.Header().Set("Connection", "close")
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return badRequest("request body: larger than %d bytes", mbe.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		g.m.bodyTimeouts.Inc()
		return &httpError{http.StatusRequestTimeout, fmt.Sprintf("request body: not received within %v", g.cfg.BodyTimeout)}
	default:
		return badRequest("request body: %v", err)
	}
}

// clientKey is the rate-limit key of a request's remote address: the IP,
// or for IPv6 its /64.
func clientKey(remote string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		host, _, _ := net.SplitHostPort(remote)
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Prefix{}
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// APIError is the JSON body of every error answer: the error in the shape
// the CLI's --json uses, and the HTTP status.
type APIError struct {
	Error  ErrorBody `json:"error"`
	Status int       `json:"status"`
	// Reason says which way the DHT failed, when it did: one of the
	// Reason* constants, empty for the gateway's own errors.
	Reason string `json:"reason,omitempty"`
}

// ErrorBody is an error in JSON: its message and, for a KRPC error, the
// code and the node that sent it.
type ErrorBody struct {
	Code    int64  `json:"code,omitempty"`
	Message string `json:"message"`
	Node    string `json:"node,omitempty"`
}

// Reasons of error answers that come from the DHT: one per sentinel error
// of node, and the request timeout. ReasonError maps them back.
const (
	ReasonNotFound = "not_found" // node.ErrNotFound: nodes answered, none held the item (404)
	ReasonNoNodes  = "no_nodes"  // node.ErrNoNodes: the node knows no other node (502)
	ReasonNoAnswer = "no_answer" // node.ErrNoAnswer: no node answered in time (502)
	ReasonRefused  = "refused"   // node.ErrRefused: the storers refused the write (502, 409, 412)
	ReasonTimeout  = "timeout"   // the request timeout cut the lookup off (504)
)

// reasonOf is the Reason of a node error, "" if it matches no sentinel.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, node.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, node.ErrNoNodes):
		return ReasonNoNodes
	case errors.Is(err, node.ErrNoAnswer):
		return ReasonNoAnswer
	case errors.Is(err, node.ErrRefused):
		return ReasonRefused
	}
	return ""
}

// ReasonError is the error a Reason stands for, so that a client of the
// gateway can match a failure with errors.Is as an embedder of node does:
// node's sentinels, and context.DeadlineExceeded for ReasonTimeout. It is
// nil for "" and for reasons it does not know.
func ReasonError(reason string) error {
	switch reason {
	case ReasonNotFound:
		return node.ErrNotFound
	case ReasonNoNodes:
		return node.ErrNoNodes
	case ReasonNoAnswer:
		return node.ErrNoAnswer
	case ReasonRefused:
		return node.ErrRefused
	case ReasonTimeout:
		return context.DeadlineExceeded
	}
	return nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, APIError{Error: ErrorBody{Message: msg}, Status: code})
}

// writeReason is writeError with a Reason.
func writeReason(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, APIError{Error: ErrorBody{Message: msg}, Status: code, Reason: reason})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// lookupFailed answers a failed lookup or store, mapping node's sentinel
// errors to an HTTP status and a Reason: 504 when the request's deadline
// cut it off, 404 when nodes answered without the item, 502 when the
// network did not answer or refused.
func (g *Gateway) lookupFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		g.m.timeouts.Inc()
		writeReason(w, http.StatusGatewayTimeout, ReasonTimeout, fmt.Sprintf("%s: timed out after %v: %v", what, g.cfg.RequestTimeout, err))
		return
	}
	if r.Context().Err() != nil {
		// the client went away; nobody reads this answer.
		writeError(w, http.StatusServiceUnavailable, what+": cancelled")
		return
	}
	code, reason := http.StatusBadGateway, reasonOf(err)
	if reason == ReasonNotFound {
		code = http.StatusNotFound
	}
	writeReason(w, code, reason, fmt.Sprintf("%s: %v", what, err))
}

// notFound answers requests no /v1 route matched: 405 if the path has a
// route for another method, else 404.
func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := g.mux.Handler(probe); pattern != "/v1/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s (see /v1/openapi.json)", r.Method, r.URL.Path))
}
