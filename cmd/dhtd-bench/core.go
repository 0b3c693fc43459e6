package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dhtd/dhtd/internal/cpuprofile"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/node/core"
)

// coreCommand runs the simulator's node core on a UDP socket
// (node.CoreNode: batched reads and writes, one timer), so that the load
// measures the per-packet cost of the core as a socket drives it, beside
// `dhtd run`. It prints "listening ADDR pid PID" once bound, then reads
// commands from stdin: "table" prints "table N", the nodes in its routing
// table. It runs until stdin reaches EOF or it is sent SIGTERM/SIGINT.
func coreCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("core", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to listen on (loopback)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop, err := cpuprofile.Start(*profile)
	if err != nil {
		return err
	}
	defer stop()
	ap, err := loopbackTarget(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("core: %w", err)
	}
	c := node.StartCore(conn, node.CoreConfig{Core: core.Config{ID: krpc.RandomID()}})
	defer c.Close()
	fmt.Fprintf(stdout, "listening %s pid %d\n", c.Addr(), os.Getpid())
	return serveLines(stdin, func(line string) {
		if strings.TrimSpace(line) != "table" {
			fmt.Fprintf(stdout, "error: want \"table\", got %q\n", line)
			return
		}
		size := 0
		c.Do(func(n *core.Node, _ time.Time) { size = n.Table().Len() })
		fmt.Fprintf(stdout, "table %d\n", size)
	})
}

// serveLines calls fn with each line of stdin, in this goroutine, until
// stdin reaches EOF or the process is sent SIGTERM or SIGINT.
func serveLines(stdin io.Reader, fn func(line string)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			fn(line)
		}
	}
}
