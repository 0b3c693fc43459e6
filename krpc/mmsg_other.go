//go:build !linux

package krpc

import (
	"net"
	"net/netip"
)

// readLoopMmsg reports that raw recvmmsg is not available here: the read
// loop uses golang.org/x/net/ipv4's batches (readLoopBatch).
func (s *Server) readLoopMmsg() bool { return false }

// BatchConn is the batched socket I/O of Linux (mmsg_linux.go); there is
// none here, and NewBatchConn reports false.
type BatchConn struct{}

// NewBatchConn reports that there is no batched I/O here.
func NewBatchConn(*net.UDPConn, int) (*BatchConn, bool) { return nil, false }

// Serve is never called: NewBatchConn returns no BatchConn.
func (b *BatchConn) Serve(func() bool, func(int), func(error) bool) {}

// Packet is never called: NewBatchConn returns no BatchConn.
func (b *BatchConn) Packet(int) ([]byte, netip.AddrPort) { return nil, netip.AddrPort{} }

// Send is never called: NewBatchConn returns no BatchConn.
func (b *BatchConn) Send([]netip.AddrPort, [][]byte) (int, error) { return 0, nil }
