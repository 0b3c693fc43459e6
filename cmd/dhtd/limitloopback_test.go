package main

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TestRunLimitLoopback: loopback sources are exempt from the per-IP rate
// limit unless --limit-loopback (or DHTD_LIMIT_LOOPBACK) is given. A burst
// of 100 pings from one loopback address to a node with --rate-limit 5
// (burst 25) is answered in full by default, and only up to the burst with
// the flag.
func TestRunLimitLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dhtd")
	}
	const pings = 100
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		maxReply int // most replies expected
		minReply int
	}{
		{name: "default", minReply: pings, maxReply: pings},
		{name: "flag", args: []string{"--limit-loopback"}, minReply: 1, maxReply: 30},
		{name: "env", env: []string{"DHTD_LIMIT_LOOPBACK=true"}, minReply: 1, maxReply: 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--no-bootstrap", "--storage", "memory", "--rate-limit", "5"}, tc.args...)
			n := startNodeEnv(t, tc.env, args...)
			to, err := net.ResolveUDPAddr("udp4", n.Addr)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := range pings {
				b, err := krpc.Encode(&krpc.Msg{T: string([]byte{byte(i), 'p'}), Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: krpc.RandomID()}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.WriteTo(b, to); err != nil {
					t.Fatal(err)
				}
			}
			// Count responses until nothing has come for a while: the node
			// answers a burst in well under a second, and every reply it
			// will send has been sent by then.
			replies := 0
			buf := make([]byte, 1500)
			for {
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				k, _, err := c.ReadFrom(buf)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatal(err)
					}
					break
				}
				// Not the node's own ping, which confirms us for its table.
				var m krpc.Msg
				if krpc.Decode(buf[:k], &m) == nil && m.Y == krpc.KindResponse {
					replies++
				}
			}
			t.Logf("%s: %d of %d pings answered", tc.name, replies, pings)
			if replies < tc.minReply || replies > tc.maxReply {
				t.Errorf("%d of %d pings answered, want %d to %d", replies, pings, tc.minReply, tc.maxReply)
			}
		})
	}
}
