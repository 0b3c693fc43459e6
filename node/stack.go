package node

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/krpc"
)

// Stack is a node of one or both address families (BEP 32 dual stack: one
// Node, socket and routing table per family). The nodes of a Stack are
// linked (Link), so each answers "want" for the other's family, and Close
// closes them all. Create it with NewStack or NewDualStack.
type Stack struct {
	nodes []*Node // the primary first
}

// ErrStackFamilies is returned by NewStack for listen addresses that are not
// one or two of different families.
var ErrStackFamilies = errors.New("node: a stack needs one listen address per address family, at most two")

// NewStack starts one node per listen address, from cfg (cfg.Listen is
// ignored): one address, or one IPv4 and one IPv6 address, in any order.
// The first address's node is the primary one (Primary); it keeps
// cfg.DataDir and cfg.ID. With two addresses the nodes share one metrics
// registry (cfg.Registry, or a new one), each series labelled with its
// family (metrics.Options.Family); the second node keeps its state in a
// subdirectory of cfg.DataDir named after its family ("ipv4" or "ipv6")
// and chooses its own id. A host name counts as IPv4.
func NewStack(cfg Config, listens ...string) (*Stack, error) {
	switch {
	case len(listens) == 0 || len(listens) > 2:
		return nil, fmt.Errorf("%w: %d given", ErrStackFamilies, len(listens))
	case len(listens) == 2 && ListenFamily(listens[0]) == ListenFamily(listens[1]):
		return nil, fmt.Errorf("%w: %q and %q are both %s", ErrStackFamilies, listens[0], listens[1], ListenFamily(listens[0]))
	}
	cfgs := make([]Config, len(listens))
	if len(listens) > 1 && cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	for i, l := range listens {
		c := cfg
		c.Listen = l
		if len(listens) > 1 {
			c.Metrics.Family = ListenFamily(l)
			c.Metrics.NoRuntime = c.Metrics.NoRuntime || i > 0
		}
		if i > 0 {
			c.ID = krpc.ID{}
			if c.DataDir != "" {
				c.DataDir = filepath.Join(cfg.DataDir, ListenFamily(l))
			}
		}
		cfgs[i] = c
	}
	return newStack(cfgs)
}

// NewDualStack starts an IPv4 node from cfg4 and an IPv6 node from cfg6 and
// links them (BEP 32). The configs are used as given: to share one metrics
// registry, give both the same Config.Registry and a different
// Config.Metrics.Family; give each its own DataDir. The IPv4 node is the
// primary one.
func NewDualStack(cfg4, cfg6 Config) (*Stack, error) {
	if ListenFamily(cfg4.Listen) != "ipv4" || ListenFamily(cfg6.Listen) != "ipv6" {
		return nil, fmt.Errorf("%w: want an IPv4 and an IPv6 address, got %q and %q", ErrStackFamilies, cfg4.Listen, cfg6.Listen)
	}
	return newStack([]Config{cfg4, cfg6})
}

func newStack(cfgs []Config) (*Stack, error) {
	s := &Stack{}
	for _, c := range cfgs {
		n, err := New(c)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.nodes = append(s.nodes, n)
	}
	if len(s.nodes) == 2 {
		Link(s.nodes[0], s.nodes[1])
	}
	return s, nil
}

// StackOf wraps nodes that are already running, one or two of different
// families, in a Stack, linking two. It is for callers that start their
// nodes themselves (for example on sockets of their own, Config.Conn).
func StackOf(nodes ...*Node) (*Stack, error) {
	switch {
	case len(nodes) == 0 || len(nodes) > 2:
		return nil, fmt.Errorf("%w: %d given", ErrStackFamilies, len(nodes))
	case len(nodes) == 2 && nodes[0].family() == nodes[1].family():
		return nil, fmt.Errorf("%w: both nodes are %s", ErrStackFamilies, nodes[0].family())
	}
	if len(nodes) == 2 {
		Link(nodes[0], nodes[1])
	}
	return &Stack{nodes: append([]*Node(nil), nodes...)}, nil
}

// Primary is the first node: the one whose data directory, id and metrics
// registry the stack was given.
func (s *Stack) Primary() *Node { return s.nodes[0] }

// Nodes returns the stack's nodes, the primary first.
func (s *Stack) Nodes() []*Node { return append([]*Node(nil), s.nodes...) }

// IPv4 is the node of the IPv4 family, or nil.
func (s *Stack) IPv4() *Node { return s.family("ipv4") }

// IPv6 is the node of the IPv6 family, or nil.
func (s *Stack) IPv6() *Node { return s.family("ipv6") }

func (s *Stack) family(f string) *Node {
	for _, n := range s.nodes {
		if n.family() == f {
			return n
		}
	}
	return nil
}

// Close closes every node and returns the first error.
func (s *Stack) Close() error {
	var first error
	for _, n := range s.nodes {
		if err := n.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// family is "ipv4" or "ipv6": the address family of the node's socket (a
// socket on the IPv6 wildcard given in Config.Conn counts as IPv6).
func (n *Node) family() string {
	if n.Addr().Addr().Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// ListenFamily is "ipv4" or "ipv6" for a listen address such as
// Config.Listen (a host name counts as IPv4).
func ListenFamily(listen string) string {
	if ap, err := netip.ParseAddrPort(listen); err == nil && ap.Addr().Is6() && !ap.Addr().Is4In6() {
		return "ipv6"
	}
	return "ipv4"
}
