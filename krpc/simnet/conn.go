package simnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Conn is one endpoint of a Network: a net.PacketConn bound to a simulated
// UDP address. ReadFrom returns *net.UDPAddr addresses and WriteTo takes
// them. Writes never block: a packet is copied and scheduled (or dropped).
type Conn struct {
	net   *Network
	addr  netip.AddrPort
	inbox chan *packet // bounded by Config.QueueLen

	closeOnce sync.Once
	closed    chan struct{}

	mu            sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time
	deadlineSet   chan struct{} // closed and replaced when the read deadline changes
}

var _ net.PacketConn = (*Conn)(nil)

func newConn(n *Network, addr netip.AddrPort) *Conn {
	return &Conn{
		net:         n,
		addr:        addr,
		inbox:       make(chan *packet, n.cfg.QueueLen),
		closed:      make(chan struct{}),
		deadlineSet: make(chan struct{}),
	}
}

// AddrPort returns the bound address.
func (c *Conn) AddrPort() netip.AddrPort { return c.addr }

// LocalAddr returns the bound address as a *net.UDPAddr.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.addr) }

func (c *Conn) opError(op string, remote net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: remote, Err: err}
}

// ReadFrom waits for a packet, the read deadline or Close. A packet longer
// than b is truncated, as with UDP. After Close it returns an error for
// which errors.Is(err, net.ErrClosed) holds; past the deadline, one whose
// Timeout() is true (errors.Is(err, os.ErrDeadlineExceeded)).
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromAddrPort is ReadFrom returning a netip.AddrPort.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// A closed Conn reports closed even if packets are queued.
		select {
		case <-c.closed:
			return 0, netip.AddrPort{}, c.opError("read", nil, net.ErrClosed)
		default:
		}
		c.mu.Lock()
		deadline, changed := c.readDeadline, c.deadlineSet
		c.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, netip.AddrPort{}, c.opError("read", nil, os.ErrDeadlineExceeded)
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case p := <-c.inbox:
			return copy(b, p.data), p.from, nil
		case <-c.closed:
			return 0, netip.AddrPort{}, c.opError("read", nil, net.ErrClosed)
		case <-changed:
			// the deadline moved: look again
		case <-expired:
			return 0, netip.AddrPort{}, c.opError("read", nil, os.ErrDeadlineExceeded)
		}
	}
}

// WriteTo sends a copy of b to addr, a *net.UDPAddr (any net.Addr whose
// String is "ip:port" is accepted too). It returns len(b) even when the
// network drops the packet, as UDP does.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	var to netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		if a == nil {
			return 0, c.opError("write", nil, errors.New("nil address"))
		}
		to = a.AddrPort()
	case nil:
		return 0, c.opError("write", nil, errors.New("nil address"))
	default:
		var err error
		if to, err = netip.ParseAddrPort(a.String()); err != nil {
			return 0, c.opError("write", addr, fmt.Errorf("unsupported address: %w", err))
		}
	}
	return c.WriteToAddrPort(b, to)
}

// WriteToAddrPort is WriteTo with a netip.AddrPort.
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	select {
	case <-c.closed:
		return 0, c.opError("write", net.UDPAddrFromAddrPort(to), net.ErrClosed)
	default:
	}
	if !to.IsValid() || to.Port() == 0 {
		return 0, c.opError("write", net.UDPAddrFromAddrPort(to), errors.New("invalid address"))
	}
	c.mu.Lock()
	wd := c.writeDeadline
	c.mu.Unlock()
	if !wd.IsZero() && !time.Now().Before(wd) {
		return 0, c.opError("write", net.UDPAddrFromAddrPort(to), os.ErrDeadlineExceeded)
	}
	c.net.send(c.addr, to, append([]byte(nil), b...))
	return len(b), nil
}

// Close unbinds the address and unblocks readers. A second Close returns
// an error wrapping net.ErrClosed, as a UDP socket does.
func (c *Conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.closed)
		c.net.unbind(c)
	})
	if !first {
		return c.opError("close", nil, net.ErrClosed)
	}
	return nil
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; it applies to a ReadFrom already
// blocked too. The zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", nil, net.ErrClosed)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDeadline = t
	close(c.deadlineSet)
	c.deadlineSet = make(chan struct{})
	return nil
}

// SetWriteDeadline sets the write deadline. Writes never block, so it only
// makes writes after it fail. The zero time means none.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", nil, net.ErrClosed)
	}
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return nil
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}
