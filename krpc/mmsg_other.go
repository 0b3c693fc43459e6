//go:build !linux

package krpc

// readLoopMmsg reports that raw recvmmsg is not available here: the read
// loop uses golang.org/x/net/ipv4's batches (readLoopBatch).
func (s *Server) readLoopMmsg() bool { return false }
