package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// serveCommand runs one dhtd node (package node, the code `dhtd run` runs)
// in memory, without bootstrap, with the two limits that cap a throughput
// measurement exposed as flags: the global reply byte budget and the
// per-IP packet limit. `dhtd run` has no flags for them yet.
func serveCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to listen on (loopback)")
	replyBPS := fs.Int("reply-bytes-per-second", -1, "global reply byte budget (node.Config.ReplyBytesPerSecond); 0: the node default (1 MiB/s); -1: unlimited")
	rate := fs.Float64("rate-limit", 0, "per-source-IP packets per second (krpc.IPLimiter); 0: default (20/s, loopback exempt); -1: disabled")
	limitLoopback := fs.Bool("limit-loopback", false, "apply the per-IP limit to loopback sources too")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback HTTP address (empty: off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := node.Config{
		Listen:              *listen,
		Logger:              logger,
		ReplyBytesPerSecond: *replyBPS,
		RateLimit:           krpc.IPLimiterConfig{Rate: *rate, LimitLoopback: *limitLoopback},
	}
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("serve: start node: %w", err)
	}
	defer n.Close()
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("serve: pprof listen %s: %w", *pprofAddr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("pprof server", "err", err)
			}
		}()
		defer srv.Close()
	}
	fmt.Fprintf(stdout, "listening %s pid %d id %s\n", n.Addr(), os.Getpid(), n.ID())
	<-ctx.Done()
	return nil
}
