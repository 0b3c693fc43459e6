package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// probeFlags are shared by every probe subcommand.
func probeFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for the answer"},
		&cli.StringFlag{Name: "bind", Usage: "local UDP address to send from (default: any, same family as ADDR)"},
		&cli.StringFlag{Name: "id", Usage: "node id to send, 40 hex characters (default: random)"},
	}, extra...)
}

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:  "probe",
		Usage: "send one KRPC query to a DHT node and print the answer (a dig for the DHT)",
		Subcommands: []*cli.Command{
			{
				Name: "ping", Usage: "ping ADDR", ArgsUsage: "ADDR",
				Flags: probeFlags(),
				Action: func(c *cli.Context) error {
					return probe(c, 1, func(id krpc.ID, _ []string) (string, *krpc.Args, error) {
						return krpc.MethodPing, &krpc.Args{ID: id}, nil
					})
				},
			},
			targetProbeCommand(krpc.MethodFindNode, "find_node ADDR TARGET"),
			probeGetPeersCommand(),
			probeAnnounceCommand(),
			probeGetCommand(),
			probePutCommand(),
			targetProbeCommand(krpc.MethodSampleInfohashes, "sample_infohashes ADDR TARGET (BEP 51)"),
		},
	}
}

// targetProbeCommand is a probe subcommand sending method with a "target"
// (and BEP 32 "want"): find_node, sample_infohashes.
func targetProbeCommand(method, usage string) *cli.Command {
	return &cli.Command{
		Name: method, Usage: usage, ArgsUsage: "ADDR TARGET",
		Flags: probeFlags(&cli.StringSliceFlag{Name: "want", Usage: "BEP 32 want entries (n4, n6)"}),
		Action: func(c *cli.Context) error {
			return probe(c, 2, func(id krpc.ID, args []string) (string, *krpc.Args, error) {
				target, err := krpc.ParseID(args[1])
				if err != nil {
					return "", nil, fmt.Errorf("TARGET: %w", err)
				}
				return method, &krpc.Args{ID: id, Target: &target, Want: c.StringSlice("want")}, nil
			})
		},
	}
}

// probeResult is what a probe prints.
type probeResult struct {
	Addr          string      `json:"addr"`
	Method        string      `json:"method"`
	RTTMillis     float64     `json:"rtt_ms"`
	ID            string      `json:"id,omitempty"`
	ClientVersion string      `json:"client_version,omitempty"`
	YourIP        string      `json:"your_ip,omitempty"`
	Nodes         []probeNode `json:"nodes,omitempty"`
	Nodes6        []probeNode `json:"nodes6,omitempty"`
	Token         string      `json:"token,omitempty"`
	Values        []string    `json:"values,omitempty"`
	V             string      `json:"v,omitempty"`     // BEP 44 v: hex of its bencoding
	Value         string      `json:"value,omitempty"` // the same as a string if it is one, else the raw bencoding
	Key           string      `json:"k,omitempty"`
	Seq           *int64      `json:"seq,omitempty"`
	Sig           string      `json:"sig,omitempty"`
	Interval      *int64      `json:"interval,omitempty"` // BEP 51, seconds
	Num           *int64      `json:"num,omitempty"`      // BEP 51
	Samples       []string    `json:"samples,omitempty"`  // BEP 51
	Error         *jsonError  `json:"error,omitempty"`
}

type probeNode struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

func probeNodes(ns []krpc.NodeInfo) []probeNode {
	out := make([]probeNode, 0, len(ns))
	for _, n := range ns {
		out = append(out, probeNode{ID: n.ID.String(), Addr: n.Addr.String()})
	}
	return out
}

// clientVersion renders a "v" value: two printable letters and a version.
func clientVersion(v string) string {
	if len(v) == 4 && v[0] >= ' ' && v[0] < 127 && v[1] >= ' ' && v[1] < 127 {
		return fmt.Sprintf("%s %d.%d", v[:2], v[2], v[3])
	}
	return strconv.Quote(v)
}

// resolveUDP resolves host:port to one address.
func resolveUDP(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// errPortUnreachable is a probe answered by ICMP port unreachable: no
// process listens on the node's port.
var errPortUnreachable = errors.New("connection refused (ICMP port unreachable: nothing listens on that port)")

// probe sends exactly one query and prints the answer.
func probe(c *cli.Context, nargs int, build func(id krpc.ID, args []string) (string, *krpc.Args, error)) error {
	if c.NArg() != nargs {
		return usageErrorf(cmdName(c), "want %d argument(s), got %d", nargs, c.NArg())
	}
	args := c.Args().Slice()
	if err := checkHostPort(cmdName(c), "ADDR", args[0]); err != nil {
		return err
	}
	to, err := resolveUDP(args[0])
	if err != nil {
		return err
	}
	id := krpc.RandomID()
	if s := c.String("id"); s != "" {
		if id, err = krpc.ParseID(s); err != nil {
			return usageErrorf(cmdName(c), "--id: %w", err)
		}
	}
	method, a, err := build(id, args)
	if err != nil {
		return &usageError{cmd: cmdName(c), err: err}
	}
	bind := c.String("bind")
	network := "udp4"
	switch ap, err := netip.ParseAddrPort(bind); {
	case bind == "":
		bind = "0.0.0.0:0"
		if to.Addr().Is6() {
			bind, network = "[::]:0", "udp6"
		}
	case err != nil:
		network = "udp" // a host name
	case ap.Addr().Is6() && !ap.Addr().Is4In6():
		network = "udp6"
	}
	laddr, err := net.ResolveUDPAddr(network, bind)
	if err != nil {
		return usageErrorf(cmdName(c), "--bind %q: %w", bind, err)
	}
	// A socket connected to the node: the kernel reports an ICMP port
	// unreachable on it, so a closed port fails at once, not at --timeout.
	conn, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return fmt.Errorf("bind %s: %w", bind, err)
	}
	ctx, cancel := context.WithCancelCause(c.Context)
	defer cancel(nil)
	pc := connectedConn{UDPConn: conn, refused: func() { cancel(errPortUnreachable) }}
	srv := krpc.NewServer(pc, nil, krpc.ServerConfig{
		QueryTimeout:  c.Duration("timeout"),
		ClientVersion: node.ClientVersion,
		Logger:        slog.New(slog.DiscardHandler),
	})
	defer srv.Close()
	start := time.Now()
	m, qerr := srv.Query(ctx, to, method, a)
	res := probeResult{Addr: to.String(), Method: method, RTTMillis: float64(time.Since(start).Microseconds()) / 1000}
	if m != nil {
		res.ClientVersion = m.V
		if m.V != "" {
			res.ClientVersion = clientVersion(m.V)
		}
		if m.IP != nil {
			res.YourIP = m.IP.AddrPort().String()
		}
		if r := m.R; r != nil {
			res.ID = r.ID.String()
			res.Nodes = probeNodes(r.Nodes)
			res.Nodes6 = probeNodes(r.Nodes6)
			if r.Token != "" {
				res.Token = hex.EncodeToString([]byte(r.Token))
			}
			for _, p := range r.Values {
				res.Values = append(res.Values, p.String())
			}
			if len(r.V) > 0 {
				res.Value, res.V = displayValue(r.V), hex.EncodeToString([]byte(r.V))
			}
			if r.K != "" {
				res.Key = hex.EncodeToString([]byte(r.K))
			}
			if r.Sig != "" {
				res.Sig = hex.EncodeToString([]byte(r.Sig))
			}
			res.Seq = r.Seq
			res.Interval, res.Num = r.Interval, r.Num
			if r.Samples != nil {
				res.Samples = make([]string, 0, len(*r.Samples))
				for _, ih := range *r.Samples {
					res.Samples = append(res.Samples, ih.String())
				}
			}
		}
	}
	switch {
	case qerr == nil:
	case errors.Is(context.Cause(ctx), errPortUnreachable):
		qerr = fmt.Errorf("%s %s: %w", method, to, errPortUnreachable)
	case errors.Is(qerr, krpc.ErrTimeout):
		qerr = &timeoutError{after: c.Duration("timeout"), err: fmt.Errorf("%s %s: no answer", method, to)}
	default:
		qerr = krpcError(to.String(), qerr)
	}
	res.Error = errorJSON(qerr)
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if qerr == nil {
		printProbe(c.App.Writer, res)
	}
	return qerr
}

// connectedConn is a UDP socket connected to the one node a probe asks,
// used as a net.PacketConn. On a connected socket the kernel reports an
// ICMP port unreachable as ECONNREFUSED on the next read; refused is then
// called.
type connectedConn struct {
	*net.UDPConn
	refused func()
}

func (c connectedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	if errors.Is(err, syscall.ECONNREFUSED) {
		c.refused()
	}
	return n, c.RemoteAddr(), err
}

func (c connectedConn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

func printProbe(w io.Writer, r probeResult) {
	fmt.Fprintf(w, "%s %s: answered in %.3f ms\n", r.Method, r.Addr, r.RTTMillis)
	fmt.Fprintf(w, "  id:      %s\n", r.ID)
	if r.ClientVersion != "" {
		fmt.Fprintf(w, "  client:  %s\n", r.ClientVersion)
	}
	if r.YourIP != "" {
		fmt.Fprintf(w, "  your ip: %s\n", r.YourIP)
	}
	if r.Token != "" {
		fmt.Fprintf(w, "  token:   %s\n", r.Token)
	}
	for _, v := range r.Values {
		fmt.Fprintf(w, "  peer:    %s\n", v)
	}
	if r.Interval != nil {
		fmt.Fprintf(w, "  interval: %ds\n", *r.Interval)
	}
	if r.Num != nil {
		fmt.Fprintf(w, "  num:     %d infohashes stored\n", *r.Num)
	}
	for _, ih := range r.Samples {
		fmt.Fprintf(w, "  sample:  %s\n", ih)
	}
	if r.V != "" {
		fmt.Fprintf(w, "  v:       %s\n", r.Value)
	}
	if r.Key != "" {
		fmt.Fprintf(w, "  k:       %s\n", r.Key)
	}
	if r.Seq != nil {
		fmt.Fprintf(w, "  seq:     %d\n", *r.Seq)
	}
	if r.Sig != "" {
		fmt.Fprintf(w, "  sig:     %s\n", r.Sig)
	}
	if len(r.Nodes)+len(r.Nodes6) > 0 {
		fmt.Fprintf(w, "  nodes:   %d\n", len(r.Nodes)+len(r.Nodes6))
		for _, n := range append(r.Nodes, r.Nodes6...) {
			fmt.Fprintf(w, "    %s %s\n", n.ID, n.Addr)
		}
	}
}
