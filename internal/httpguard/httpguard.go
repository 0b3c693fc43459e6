// Package httpguard keeps web pages from driving dhtd's local HTTP
// listeners (the gateway and the metrics listener).
//
// A listener on loopback is reachable by every page the user's browser
// opens. Two attacks follow, and a Guard refuses both:
//
//   - DNS rebinding: a page on attacker.example re-resolves its own name to
//     127.0.0.1, so the browser treats the listener as the page's origin.
//     The request still names attacker.example in its Host header, so a
//     Guard accepts only the Host the connection was made to (the address
//     the listener accepted it on, or localhost with that port) and the
//     names an operator allows (Policy.AllowedHosts). Answer: 421.
//   - Cross-site request forgery: a page on another origin sends a "simple"
//     request (a form post, or fetch with mode no-cors and a text/plain
//     body) that the browser sends without asking the listener first. A
//     Guard refuses requests that a browser marks as coming from another
//     origin (the Origin and Sec-Fetch-Site headers) unless the origin is
//     allowed (Policy.AllowedOrigins), and a write must say
//     Content-Type: application/json, which no page can send cross-origin
//     without a CORS preflight (which these listeners never grant).
//     Answers: 403 and 415.
//
// Clients that are not browsers (curl, dhtd's own commands) send no Origin
// and no Sec-Fetch-Site and are not affected, apart from the Content-Type
// of writes.
//
// A route whose point is browser access from any site (a public relay)
// opts in with CrossOrigin: only the Host is checked, and the route sets
// CORS headers with SetCORS.
package httpguard

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Access is a route's policy towards requests made by web pages.
type Access int

const (
	// SameOrigin (the default) serves pages of the listener's own origin
	// and of Policy.AllowedOrigins; writes must be application/json.
	SameOrigin Access = iota
	// CrossOrigin is the explicit opt-in of a route that any web page may
	// use (its answers carry CORS headers, see SetCORS): Origin,
	// Sec-Fetch-Site and Content-Type are left to the route. The Host is
	// still checked, against DNS rebinding.
	CrossOrigin
)

// Reasons a request is refused: the fixed label set of the refusal
// metrics.
const (
	ReasonHost        = "host"
	ReasonOrigin      = "origin"
	ReasonFetchSite   = "fetch_site"
	ReasonContentType = "content_type"
)

// Reasons lists every refusal reason.
var Reasons = []string{ReasonHost, ReasonOrigin, ReasonFetchSite, ReasonContentType}

// ErrRefused is matched (errors.Is) by every *Refusal.
var ErrRefused = errors.New("request refused")

// Refusal is why a request is refused, and the status that answers it.
type Refusal struct {
	Status int    // 421, 403 or 415
	Reason string // one of Reasons
	Msg    string // a short explanation for the client
}

func (r *Refusal) Error() string { return r.Msg }

// Is makes errors.Is(r, ErrRefused) true.
func (r *Refusal) Is(target error) bool { return target == ErrRefused }

// Policy is what a Guard allows beyond the listener's own address.
type Policy struct {
	// AllowedHosts are further Host header values to serve: a name (any
	// port) or name:port, e.g. "dht.example.org" behind a reverse proxy
	// that keeps the Host. IP literals are written as in a URL
	// ("[::1]:8080").
	AllowedHosts []string
	// AllowedOrigins are further web origins whose pages may send
	// requests, as scheme://host[:port], e.g. "https://app.example.org".
	AllowedOrigins []string
}

// Guard checks requests against a Policy. The zero Guard allows only the
// listener's own address and origin.
type Guard struct {
	hosts   map[string]bool // "name" (any port) or "name:port"
	origins map[string]bool // "scheme://host:port", the port explicit
}

// New checks p and returns its Guard.
func New(p Policy) (*Guard, error) {
	g := &Guard{hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, h := range p.AllowedHosts {
		host, port, err := splitHost(h)
		if err != nil {
			return nil, fmt.Errorf("allowed host %q: want a name or name:port", h)
		}
		if port != "" {
			host = net.JoinHostPort(host, port)
		}
		g.hosts[host] = true
	}
	for _, o := range p.AllowedOrigins {
		norm, ok := normalOrigin(o)
		if !ok {
			return nil, fmt.Errorf("allowed origin %q: want scheme://host[:port] with scheme http or https", o)
		}
		g.origins[norm] = true
	}
	return g, nil
}

// ParseList splits a comma-separated flag value into its trimmed,
// non-empty entries.
func ParseList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// Check returns nil if r may be served by a route of the given access, or
// why not.
func (g *Guard) Check(r *http.Request, access Access) *Refusal {
	if !g.hostAllowed(r) {
		return &Refusal{http.StatusMisdirectedRequest, ReasonHost,
			fmt.Sprintf("host %q is not served here (allowed: this listener's address, localhost, --http-allowed-hosts)", r.Host)}
	}
	if access == CrossOrigin {
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !g.sameOrigin(origin, r.Host) && !g.listedOrigin(origin) {
		return &Refusal{http.StatusForbidden, ReasonOrigin,
			fmt.Sprintf("origin %q may not use this endpoint (allowed: same origin, --http-allowed-origins)", origin)}
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	case "same-site", "cross-site":
		// a page of another origin: only an allowed one, or a top-level
		// navigation (the user following a link) that reads.
		navigation := safeMethod(r.Method) && r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-Dest") == "document"
		if !g.listedOrigin(origin) && !navigation {
			return &Refusal{http.StatusForbidden, ReasonFetchSite,
				fmt.Sprintf("a %s request from a web page may not use this endpoint", site)}
		}
	default:
		return &Refusal{http.StatusForbidden, ReasonFetchSite, fmt.Sprintf("Sec-Fetch-Site %q is not understood", site)}
	}
	if !safeMethod(r.Method) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return &Refusal{http.StatusUnsupportedMediaType, ReasonContentType,
				fmt.Sprintf("a %s needs Content-Type: application/json, got %q", r.Method, r.Header.Get("Content-Type"))}
		}
	}
	return nil
}

// Handler serves h behind g, every route SameOrigin; a refused request is
// answered in text/plain and, if onRefuse is not nil, counted with its
// reason.
func (g *Guard) Handler(h http.Handler, onRefuse func(reason string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ref := g.Check(r, SameOrigin); ref != nil {
			if onRefuse != nil {
				onRefuse(ref.Reason)
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(ref.Status)
			_, _ = fmt.Fprintln(w, ref.Msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// SetCORS sets the headers that let any web page read an answer of a
// CrossOrigin route and, for a preflight (an OPTIONS request), send the
// methods given and the headers it asks for. No credentials are allowed.
func SetCORS(w http.ResponseWriter, r *http.Request, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions && methods != "" {
		h.Set("Access-Control-Allow-Methods", methods)
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		}
		h.Set("Access-Control-Max-Age", "600")
	}
}

// safeMethod reports whether m only reads.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// hostAllowed: r.Host is the address the connection was accepted on,
// localhost with its port, or an allowed host.
func (g *Guard) hostAllowed(r *http.Request) bool {
	host, port, err := splitHost(r.Host)
	if err != nil || host == "" {
		return false
	}
	if g.hosts[host] || (port != "" && g.hosts[net.JoinHostPort(host, port)]) {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	lap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return false
	}
	if port == "" {
		port = "80"
	}
	if port != strconv.Itoa(int(lap.Port())) {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap() == lap.Addr().Unmap()
}

// splitHost splits a Host header value into its lower-case host (IPv6
// without brackets, no trailing dot) and port ("" if none).
func splitHost(hostport string) (host, port string, err error) {
	hp := strings.ToLower(hostport)
	switch {
	case strings.HasPrefix(hp, "["):
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", fmt.Errorf("host %q: no closing bracket", hostport)
		}
		host, rest := hp[1:end], hp[end+1:]
		if _, err := netip.ParseAddr(host); err != nil {
			return "", "", fmt.Errorf("host %q: %w", hostport, err)
		}
		if rest != "" {
			if rest[0] != ':' {
				return "", "", fmt.Errorf("host %q: junk after the address", hostport)
			}
			port = rest[1:]
		} else {
			return host, "", nil
		}
		return checkPort(hostport, host, port)
	case strings.Count(hp, ":") == 1:
		host, port, _ = strings.Cut(hp, ":")
		host = strings.TrimSuffix(host, ".")
		if host == "" || strings.ContainsAny(host, "[]/ @") {
			return "", "", fmt.Errorf("host %q: empty or malformed", hostport)
		}
		return checkPort(hostport, host, port)
	case strings.Contains(hp, ":"):
		return "", "", fmt.Errorf("host %q: an IPv6 address must be in brackets", hostport)
	}
	host = strings.TrimSuffix(hp, ".")
	if host == "" || strings.ContainsAny(host, "[]/ @") {
		return "", "", fmt.Errorf("host %q: empty or malformed", hostport)
	}
	return host, "", nil
}

// checkPort returns host and port if port is a decimal TCP port.
func checkPort(hostport, host, port string) (string, string, error) {
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
		return "", "", fmt.Errorf("host %q: bad port %q", hostport, port)
	}
	return host, port, nil
}

// normalOrigin returns an origin as scheme://host:port (the port
// explicit), or false if it is not an http(s) origin.
func normalOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.ToLower(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false
	}
	host, port, err := splitHost(u.Host)
	if err != nil {
		return "", false
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(host, port), true
}

// listedOrigin reports whether origin is in Policy.AllowedOrigins.
func (g *Guard) listedOrigin(origin string) bool {
	norm, ok := normalOrigin(origin)
	return ok && g.origins[norm]
}

// sameOrigin reports whether origin names the host and port the request
// was sent to. The scheme is not compared: behind a TLS-terminating proxy
// the listener cannot know it.
func (g *Guard) sameOrigin(origin, reqHost string) bool {
	norm, ok := normalOrigin(origin)
	if !ok {
		return false
	}
	oHost, oPort, err := splitHost(norm[strings.Index(norm, "://")+3:])
	if err != nil {
		return false
	}
	host, port, err := splitHost(reqHost)
	if err != nil || host != oHost {
		return false
	}
	if port == "" { // the default port of the origin's scheme
		return (strings.HasPrefix(norm, "http://") && oPort == "80") || (strings.HasPrefix(norm, "https://") && oPort == "443")
	}
	return port == oPort
}
