// Package gateway serves a node over HTTP: a JSON API under /v1/ (BEP 44
// items, peers, announces, node lookups) and a live status page at /.
//
// Every request is bounded: the body by Config.MaxBodyBytes, the time by
// Config.RequestTimeout; requests that run a DHT lookup share
// Config.MaxLookups slots (503 when none is free), and each client IP (IPv6:
// its /64) has a token bucket (429 when empty) whose table is bounded by
// Config.MaxClients. The gateway holds no private keys: mutable items
// arrive signed by the client and are verified before they are put.
//
// The gateway adds nothing to what the node will store: values go through
// node.PutImmutable and node.PutSigned, which apply the BEP 44 checks, and
// the storing nodes check again.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/node"
)

// Defaults of the zero fields of Config.
const (
	DefaultRequestTimeout = 20 * time.Second
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
		c.Registry = n.Registry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
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
	n       *node.Node
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	slots   chan struct{} // lookup slots
	limiter *limiter
	m       *gatewayMetrics
}

// route is one endpoint: its ServeMux pattern, its metrics label and
// whether it runs a DHT lookup (and so needs a slot).
type route struct {
	pattern string
	name    string // a fixed label value (routeNames)
	lookup  bool
	h       func(g *Gateway, w http.ResponseWriter, r *http.Request)
}

// routes lists every endpoint; openapi.json documents each /v1 one (a test
// checks that they agree).
var routes = []route{
	{"POST /v1/immutable", "immutable_put", true, (*Gateway).putImmutable},
	{"GET /v1/immutable/{target}", "immutable_get", true, (*Gateway).getImmutable},
	{"GET /v1/mutable/{pubkey}", "mutable_get", true, (*Gateway).getMutable},
	{"PUT /v1/mutable/{pubkey}", "mutable_put", true, (*Gateway).putMutable},
	{"GET /v1/peers/{infohash}", "peers", true, (*Gateway).getPeers},
	{"POST /v1/announce/{infohash}", "announce", true, (*Gateway).announce},
	{"GET /v1/nodes/{target}", "nodes", true, (*Gateway).findNodes},
	{"GET /v1/ping", "ping", false, (*Gateway).ping},
	{"GET /v1/status", "status", false, (*Gateway).status},
	{"GET /v1/openapi.json", "openapi", false, (*Gateway).openAPI},
	{"GET /{$}", "page", false, (*Gateway).page},
	{"GET /ui/{file}", "page", false, (*Gateway).asset},
	{"/v1/", "unknown", false, (*Gateway).notFound},
}

// New returns the gateway of n and registers its metrics on cfg.Registry
// (an error if they are registered there already).
func New(n *node.Node, cfg Config) (*Gateway, error) {
	cfg.setDefaults(n)
	g := &Gateway{
		n: n, cfg: cfg, log: cfg.Logger,
		mux:     http.NewServeMux(),
		slots:   make(chan struct{}, cfg.MaxLookups),
		limiter: newLimiter(cfg.RatePerSecond, cfg.RateBurst, cfg.MaxClients),
	}
	m, err := newMetrics(cfg.Registry, g)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	g.m = m
	for _, rt := range routes {
		g.mux.Handle(rt.pattern, g.wrap(rt))
	}
	return g, nil
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

// wrap applies, in order: the per-IP rate limit, the body bound, the
// request deadline and, for lookups, a slot.
func (g *Gateway) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { g.m.requests.WithLabelValues(rt.name, codeLabel(sw.code)).Inc() }()
		w = sw
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !g.limiter.allow(clientKey(r.RemoteAddr), g.cfg.Now()) {
			g.m.rateLimited.Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "rate limit: too many requests from this address")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
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

// apiError is the JSON body of every error answer: the error in the shape
// the CLI's --json uses, and the HTTP status.
type apiError struct {
	Error  errorBody `json:"error"`
	Status int       `json:"status"`
}

// errorBody is an error in JSON: its message and, for a KRPC error, the
// code and the node that sent it.
type errorBody struct {
	Code    int64  `json:"code,omitempty"`
	Message string `json:"message"`
	Node    string `json:"node,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: errorBody{Message: msg}, Status: code})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// errStatus maps a failed lookup or store to an HTTP status: 504 when the
// request's deadline cut it off, 502 when the network did not answer or
// refused.
func (g *Gateway) lookupFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		g.m.timeouts.Inc()
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("%s: timed out after %v: %v", what, g.cfg.RequestTimeout, err))
		return
	}
	if r.Context().Err() != nil {
		// the client went away; nobody reads this answer.
		writeError(w, http.StatusServiceUnavailable, what+": cancelled")
		return
	}
	writeError(w, http.StatusBadGateway, fmt.Sprintf("%s: %v", what, err))
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
