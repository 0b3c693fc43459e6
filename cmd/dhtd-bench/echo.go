package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/net/ipv4"
)

// echoBatch is the most datagrams one recvmmsg or sendmmsg moves in the
// echo server: the batch size of krpc.Server's read loop, so that the
// two do the same socket work per packet.
const echoBatch = 32

// echoCommand runs a UDP echo server: every datagram goes back to its
// sender unchanged. Two kinds, the baselines of the benchmark (run with
// `load --echo`):
//
//   - bare (--bare): one datagram at a time with net.UDPConn's
//     ReadFromUDPAddrPort and WriteToUDPAddrPort, the loop anyone would
//     write; answers per CPU-second of a DHT node divided by its figure
//     says whether the node answers a query for less than a plain echo
//     costs.
//   - batched (the default): it reads and writes as krpc.Server does on
//     an IPv4 socket (recvmmsg and sendmmsg through golang.org/x/net/ipv4,
//     batches of up to 32), so the node's figure divided by its figure is
//     the share of the node's own syscall-only cost it reaches.
//
// Both ask for the socket buffer krpc.Server asks for.
func echoCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to listen on (loopback)")
	bare := fs.Bool("bare", false, "one datagram per read and per write (ReadFromUDPAddrPort/WriteToUDPAddrPort) instead of recvmmsg/sendmmsg batches")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(*listen)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return fmt.Errorf("--listen %q: want an IPv4 loopback address", *listen)
	}
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	_ = c.SetReadBuffer(2 << 20)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); _ = c.Close() }()
	fmt.Fprintf(stdout, "listening %s pid %d\n", c.LocalAddr(), os.Getpid())
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	if *bare {
		return bareEchoLoop(c)
	}
	return echoLoop(c)
}

// bareEchoLoop answers every datagram on c with itself, one datagram per
// read and per write, until c is closed.
func bareEchoLoop(c *net.UDPConn) error {
	buf := make([]byte, 1501)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// echoLoop answers every datagram on c with itself until c is closed.
func echoLoop(c *net.UDPConn) error {
	pc := ipv4.NewPacketConn(c)
	in := make([]ipv4.Message, echoBatch)
	out := make([]ipv4.Message, echoBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 1501)}
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		for i := range in[:n] {
			out[i].Buffers[0] = in[i].Buffers[0][:in[i].N]
			out[i].Addr = in[i].Addr
		}
		for sent := 0; sent < n; {
			k, err := pc.WriteBatch(out[sent:n], 0)
			sent += k
			if err != nil || k == 0 {
				sent++ // a datagram the kernel refuses is dropped
			}
		}
	}
}
