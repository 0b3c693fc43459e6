package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// announceCommand stores many peers on a node: from each of --ips source
// addresses (127.1.x.y, one socket each) it announces itself (get_peers
// for a token, then announce_peer) on each of --infohashes infohashes, so
// the node stores ips x infohashes peers (its store keeps one peer per IP
// and infohash). It then prints the node's RSS given --pid.
func announceCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("announce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "127.0.0.1:6881", "node to fill (loopback only)")
	ips := fs.Int("ips", 500, "source addresses (127.1.0.1 ...), one socket each")
	infohashes := fs.Int("infohashes", 2000, "infohashes each address announces")
	window := fs.Int("window", 16, "announces in flight per socket")
	parallel := fs.Int("parallel", 32, "sockets announcing at once")
	pid := fs.Int("pid", 0, "the server's pid: report its RSS before and after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := loopbackTarget(*target)
	if err != nil {
		return err
	}
	if *ips < 1 || *ips > 60000 || *infohashes < 1 || *window < 1 || *parallel < 1 {
		return fmt.Errorf("need 1 <= --ips <= 60000, --infohashes, --window, --parallel >= 1")
	}
	var rss0 int64
	if *pid > 0 {
		if rss0, err = procRSS(*pid); err != nil {
			return err
		}
	}
	ihs := make([]krpc.ID, *infohashes)
	for i := range ihs {
		binary.BigEndian.PutUint32(ihs[i][:], uint32(i))
		ihs[i][19] = 0xa5
	}
	start := time.Now()
	var stored, failed atomic.Int64
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	for i := range *ips {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			src := netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(1 + i%250)})
			ok, bad, err := announceFrom(context.Background(), netip.AddrPortFrom(src, 0), ap, ihs, *window)
			stored.Add(int64(ok))
			failed.Add(int64(bad))
			if err != nil {
				errMu.Lock()
				firstErr = errors.Join(firstErr, err)
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Fprintf(stdout, "announced %d peers (%d failed) from %d addresses on %d infohashes in %v (%.0f announces/s)\n",
		stored.Load(), failed.Load(), *ips, *infohashes, el.Round(time.Millisecond), float64(stored.Load())/el.Seconds())
	if *pid > 0 {
		time.Sleep(time.Second)
		rss1, err := procRSS(*pid)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "server RSS %.1f MiB before, %.1f MiB after\n", float64(rss0)/1024, float64(rss1)/1024)
	}
	return firstErr
}

// announceFrom announces src on every infohash: get_peers, then
// announce_peer with the token, window at a time, retrying a step up to
// three times after a 1 s timeout. It returns the announces acknowledged
// and those that failed.
func announceFrom(ctx context.Context, src, target netip.AddrPort, ihs []krpc.ID, window int) (ok, bad int, err error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.Addr(), 0)))
	if err != nil {
		return 0, len(ihs), fmt.Errorf("announce: socket on %s: %w", src.Addr(), err)
	}
	defer c.Close()
	var self krpc.ID
	copy(self[:], src.Addr().AsSlice())
	self[19] = 1
	type step struct {
		ih       int
		announce bool
		token    string
		sent     time.Time
		tries    int
	}
	pending := make(map[uint16]*step, window)
	var tid uint16
	out := make([]byte, 0, 256)
	send := func(s *step) error {
		tid++
		a := krpc.Args{ID: self, InfoHash: &ihs[s.ih]}
		q := krpc.Msg{Y: krpc.KindQuery, Q: krpc.MethodGetPeers, A: &a}
		if s.announce {
			port := int64(6881)
			q.Q, a.Token, a.Port = krpc.MethodAnnouncePeer, s.token, &port
		}
		var t [2]byte
		binary.BigEndian.PutUint16(t[:], tid)
		q.T = string(t[:])
		var err error
		if out, err = krpc.AppendEncode(out[:0], &q); err != nil {
			return err
		}
		s.sent = time.Now()
		s.tries++
		pending[tid] = s
		_, err = c.WriteToUDPAddrPort(out, target)
		return err
	}
	next := 0
	buf := make([]byte, 4096)
	var m krpc.Msg
	for ok+bad < len(ihs) {
		if ctx.Err() != nil {
			return ok, len(ihs) - ok, ctx.Err()
		}
		for len(pending) < window && next < len(ihs) {
			if err := send(&step{ih: next}); err != nil {
				return ok, len(ihs) - ok, fmt.Errorf("announce: send from %s: %w", src.Addr(), err)
			}
			next++
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, rerr := c.ReadFromUDPAddrPort(buf)
		if rerr == nil && krpc.Decode(buf[:n], &m) == nil && len(m.T) == 2 {
			id := binary.BigEndian.Uint16([]byte(m.T))
			if s := pending[id]; s != nil {
				delete(pending, id)
				switch {
				case m.R == nil:
					bad++ // a KRPC error: counted, not retried
				case !s.announce && m.R.Token != "":
					s.announce, s.token, s.tries = true, m.R.Token, 0
					if err := send(s); err != nil {
						return ok, len(ihs) - ok, fmt.Errorf("announce: send from %s: %w", src.Addr(), err)
					}
				case s.announce:
					ok++
				default:
					bad++
				}
			}
		}
		now := time.Now()
		for id, s := range pending {
			if now.Sub(s.sent) < time.Second {
				continue
			}
			delete(pending, id)
			if s.tries >= 3 {
				bad++
				continue
			}
			if err := send(s); err != nil {
				return ok, len(ihs) - ok, fmt.Errorf("announce: send from %s: %w", src.Addr(), err)
			}
		}
	}
	return ok, bad, nil
}
