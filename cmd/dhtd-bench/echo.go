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

// echoCommand runs a bare UDP echo server: every datagram goes back to
// its sender unchanged. It reads and writes as krpc.Server does on an
// IPv4 socket (recvmmsg and sendmmsg through golang.org/x/net/ipv4,
// batches of up to 32, the same socket buffer), so answers per CPU-second
// of a DHT node divided by the echo server's is the share of the
// syscall-only cost the node reaches. Run with `load --echo`.
func echoCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to listen on (loopback)")
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
	return echoLoop(c)
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
