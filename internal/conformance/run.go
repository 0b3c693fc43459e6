package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// Config configures a run. Zero values mean the documented defaults.
type Config struct {
	// Target is the UDP address of the node under test.
	Target netip.AddrPort
	// Sources are the local addresses to send from. Default: on loopback,
	// eight addresses from 127.0.0.2 up (skipping the target's), so that
	// checks needing several querier IPs run; otherwise the one address the
	// host routes to Target from.
	Sources []netip.Addr
	// Timeout bounds each query. Default 2s.
	Timeout time.Duration
	// Total bounds the whole run; checks not reached by then are skipped.
	// Default 60s.
	Total time.Duration
	// MaxPackets bounds the packets sent from each source address (queries
	// and answers to the target's own queries). Default 200.
	MaxPackets int
	// Rate, if positive, paces each source address to this many packets
	// per second (a public node may block a fast sender).
	Rate float64
	// Only restricts the run to these groups (see Groups). Empty runs all.
	Only []string
	// TokenWait, if positive, is how long the token expiry check waits
	// before using a token; it must exceed the node's token lifetime
	// (BEP 5's reference implementation: up to ten minutes). Zero skips
	// that check.
	TokenWait time.Duration
}

// Report is the outcome of a run.
type Report struct {
	Target        string           `json:"target"`
	TargetID      string           `json:"target_id,omitempty"`
	ClientVersion string           `json:"client_version,omitempty"`
	Sources       []string         `json:"sources"`
	Results       []Result         `json:"results"`
	Passed        int              `json:"passed"`
	Failed        int              `json:"failed"`
	Skipped       int              `json:"skipped"`
	MustFailed    int              `json:"must_failed"`
	Packets       map[string]int64 `json:"packets"` // sent, per source address
	ElapsedMillis int64            `json:"elapsed_ms"`
}

// ErrNoAnswer is returned by Run when the target does not answer a ping.
var ErrNoAnswer = errors.New("conformance: target does not answer ping")

// env is the state of one run.
type env struct {
	cfg  Config
	ctx  context.Context
	srcs []*source
	main *sock
	tid  krpc.ID // the target's node id

	compliant bool       // queriers use ids valid for their address (BEP 42)
	external  netip.Addr // the address the target reported for the main querier
	local     bool       // the target is on this host: its "ip" must be our exact address

	mu            sync.Mutex
	socks         []*sock
	results       map[string]Result
	oversize      []string // replies over 1024 bytes
	listed        []string // replies listing their querier
	announced     []krpc.ID
	paced         map[*source]time.Time
	targetVersion string

	seedOnce sync.Once
	seeded   *seeding
}

func (c *Config) setDefaults() error {
	if !c.Target.IsValid() {
		return errors.New("conformance: no target address")
	}
	c.Target = netip.AddrPortFrom(c.Target.Addr().Unmap(), c.Target.Port())
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Total <= 0 {
		c.Total = 60 * time.Second
	}
	if c.MaxPackets <= 0 {
		c.MaxPackets = 200
	}
	for _, g := range c.Only {
		if !slices.Contains(Groups(), g) {
			return fmt.Errorf("conformance: unknown group %q (groups: %v)", g, Groups())
		}
	}
	if len(c.Sources) > 0 {
		return nil
	}
	ip := c.Target.Addr()
	switch {
	case ip.Is4() && ip.IsLoopback():
		for a := netip.AddrFrom4([4]byte{127, 0, 0, 2}); len(c.Sources) < 8; a = a.Next() {
			if a != ip {
				c.Sources = append(c.Sources, a)
			}
		}
	case ip.IsLoopback():
		c.Sources = []netip.Addr{ip}
	default:
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(c.Target))
		if err != nil {
			return fmt.Errorf("conformance: no route to %s: %w", c.Target, err)
		}
		c.Sources = []netip.Addr{conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()}
		_ = conn.Close()
	}
	return nil
}

// Run runs the suite against cfg.Target. It returns a report even with an
// error (then every check is skipped).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	start := time.Now()
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Total)
	defer cancel()
	e := &env{cfg: cfg, ctx: ctx, results: map[string]Result{}, paced: map[*source]time.Time{}}
	ip := cfg.Target.Addr()
	e.local = ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast()
	for _, a := range cfg.Sources {
		e.srcs = append(e.srcs, &source{addr: a, max: int64(cfg.MaxPackets)})
	}
	defer func() {
		for _, s := range e.socks {
			s.close()
		}
	}()
	rep := &Report{Target: cfg.Target.String(), Packets: map[string]int64{}}
	var runErr error
	if err := e.hello(); err != nil {
		runErr = err
	} else {
		rep.TargetID = e.tid.String()
		for _, g := range groups {
			if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, g.name) {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			g.run(e)
		}
		if len(cfg.Only) == 0 || slices.Contains(cfg.Only, "bep32") {
			e.finishPacketSize()
		}
		if len(cfg.Only) == 0 || slices.Contains(cfg.Only, "nodes") {
			e.finishQuerier()
		}
	}
	if v, ok := e.version(); ok {
		rep.ClientVersion = v
	}
	for _, c := range catalog {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, c.Group) {
			continue
		}
		r, ok := e.results[c.Name]
		if !ok {
			reason := "not reached"
			switch {
			case runErr != nil:
				reason = runErr.Error()
			case ctx.Err() != nil:
				reason = fmt.Sprintf("total time bound (%v) reached", cfg.Total)
			}
			r = Result{Check: *c, Status: Skip, Reason: reason}
		}
		rep.Results = append(rep.Results, r)
		switch r.Status {
		case Pass:
			rep.Passed++
		case Fail:
			rep.Failed++
			if c.Level == Must {
				rep.MustFailed++
			}
		default:
			rep.Skipped++
		}
	}
	for _, s := range e.srcs {
		rep.Sources = append(rep.Sources, s.addr.String())
		rep.Packets[s.addr.String()] = s.sent.Load()
	}
	rep.ElapsedMillis = time.Since(start).Milliseconds()
	return rep, runErr
}

var groups = []struct {
	name string
	run  func(*env)
}{
	{"envelope", runEnvelope},
	{"errors", runErrors},
	{"malformed", runMalformed},
	{"tokens", runTokens},
	{"nodes", runNodes},
	{"bep32", runBEP32},
	{"bep33", runBEP33},
	{"bep42", runBEP42},
	{"bep43", runBEP43},
	{"bep44", runBEP44},
	{"bep51", runBEP51},
}

// hello binds the main querier and pings the target for its id. A target
// that refuses our id but tells us our address (BEP 42: an enforcing node
// answers with an error carrying "ip") is pinged again from ids valid for
// that address, and every later querier gets such an id.
func (e *env) hello() error {
	s, err := e.newSock(e.srcs[0], krpc.RandomID(), false)
	if err != nil {
		return err
	}
	e.main = s
	var last error
	for range 3 {
		r, err := s.query(e.ctx, "ping", nil)
		if err != nil {
			last = err
			continue
		}
		rd, ok := r.r()
		id, _ := rd.str("id")
		if ok && len(id) == krpc.IDLen {
			copy(e.tid[:], id)
			return nil
		}
		last = fmt.Errorf("answered %s", r.describe())
		if ip, ok := r.msg.str("ip"); ok && r.y() == "e" && !e.compliant {
			ap, err := krpc.ParseCompactPeer([]byte(ip))
			if err != nil {
				continue
			}
			e.compliant, e.external = true, ap.Addr().Unmap()
			if s, err = e.newSock(e.srcs[0], e.idFor(e.srcs[0]), false); err != nil {
				return err
			}
			e.main = s
		}
	}
	return fmt.Errorf("%w %s: %v", ErrNoAnswer, e.cfg.Target, last)
}

// idFor returns a querier id for src: random, or, once the target has
// refused a random id (BEP 42 enforcement), one valid for the address the
// target sees: the address it reported when that is a global one (a NAT
// maps every source to it), else src's own.
func (e *env) idFor(src *source) krpc.ID {
	if !e.compliant {
		return krpc.RandomID()
	}
	ip := src.addr
	if x := e.external; x.IsGlobalUnicast() && !x.IsPrivate() {
		ip = x
	}
	return bep42ID(ip)
}

// version returns the "v" the target sent, if any.
func (e *env) version() (string, bool) {
	return e.targetVersion, e.targetVersion != ""
}

// record sets a check's result; the first result of a check stands.
func (e *env) record(c *Check, st Status, format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.results[c.Name]; ok {
		return
	}
	e.results[c.Name] = Result{Check: *c, Status: st, Reason: fmt.Sprintf(format, args...)}
}

// skipRest skips every check of group not yet recorded.
func (e *env) skipRest(group, format string, args ...any) {
	for _, c := range catalog {
		if c.Group == group {
			e.skip(c, format, args...)
		}
	}
}

// status returns c's result so far, "" if none.
func (e *env) status(c *Check) Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.results[c.Name].Status
}

func (e *env) pass(c *Check, format string, args ...any) { e.record(c, Pass, format, args...) }
func (e *env) fail(c *Check, format string, args ...any) { e.record(c, Fail, format, args...) }
func (e *env) skip(c *Check, format string, args ...any) { e.record(c, Skip, format, args...) }

// broken records a check that could not run because a query failed: a
// spent budget or the time bound skips it, silence fails it.
func (e *env) broken(c *Check, what string, err error) {
	switch {
	case errors.Is(err, errBudget), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.skip(c, "%s: %v", what, err)
	case errors.Is(err, errNoReply):
		e.fail(c, "%s: no reply within %v", what, e.cfg.Timeout)
	default:
		e.skip(c, "%s: %v", what, err)
	}
}

// src returns the i-th source address (wrapping around).
func (e *env) src(i int) *source { return e.srcs[i%len(e.srcs)] }

// sock binds a new querier with a random id on the i-th source.
func (e *env) sock(i int) (*sock, error) { return e.newSock(e.src(i), e.idFor(e.src(i)), false) }

// rate paces src to Config.Rate.
func (e *env) rate(src *source) {
	if e.cfg.Rate <= 0 {
		return
	}
	gap := time.Duration(float64(time.Second) / e.cfg.Rate)
	e.mu.Lock()
	now := time.Now()
	at := e.paced[src]
	if at.Before(now) {
		at = now
	}
	e.paced[src] = at.Add(gap)
	e.mu.Unlock()
	if d := time.Until(at); d > 0 {
		select {
		case <-time.After(d):
		case <-e.ctx.Done():
		}
	}
}

// observe looks at every packet received, for the checks that hold over the
// whole run.
func (e *env) observe(s *sock, r *reply) {
	if r.err != nil {
		return
	}
	y := r.y()
	if y != "r" && y != "e" {
		if y == "q" && s == e.main {
			e.noteVersion(r)
		}
		return
	}
	e.noteVersion(r)
	e.mu.Lock()
	defer e.mu.Unlock()
	rd, _ := r.r()
	if _, hasV := rd.d["v"]; len(r.raw) > 1024 && !hasV && len(e.oversize) < 8 {
		e.oversize = append(e.oversize, fmt.Sprintf("%d-byte reply to %s", len(r.raw), s.addr))
	}
	for _, key := range []string{"nodes", "nodes6"} {
		for _, n := range parseNodes(rd, key) {
			if (n.ID == s.id || n.Addr == s.addr) && len(e.listed) < 8 {
				e.listed = append(e.listed, fmt.Sprintf("%s listed %s@%s to itself", key, n.ID, n.Addr))
			}
		}
	}
}

func (e *env) noteVersion(r *reply) {
	if v, ok := r.msg.str("v"); ok {
		e.mu.Lock()
		if e.targetVersion == "" {
			e.targetVersion = clientVersion(v)
		}
		e.mu.Unlock()
	}
}

// clientVersion renders a "v" value: two letters and a version.
func clientVersion(v string) string {
	if len(v) == 4 && v[0] >= ' ' && v[0] < 127 && v[1] >= ' ' && v[1] < 127 {
		return fmt.Sprintf("%s %d.%d", v[:2], v[2], v[3])
	}
	return fmt.Sprintf("%q", v)
}

// parseNodes decodes a compact node list (BEP 5: 26 bytes, BEP 32: 38
// bytes) from the dict r; a trailing partial entry is ignored.
func parseNodes(r value, key string) []krpc.NodeInfo {
	s, ok := r.str(key)
	if !ok {
		return nil
	}
	per := 26
	if key == "nodes6" {
		per = 38
	}
	var out []krpc.NodeInfo
	for ; len(s) >= per; s = s[per:] {
		var n krpc.NodeInfo
		copy(n.ID[:], s[:20])
		ap, err := krpc.ParseCompactPeer([]byte(s[20:per]))
		if err != nil {
			continue
		}
		n.Addr = ap
		out = append(out, n)
	}
	return out
}
