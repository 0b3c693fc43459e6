//go:build linux

package krpc

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// mmsgIO is the read loop's socket I/O on Linux: recvmmsg and sendmmsg
// called directly on the socket, with every header, iovec and address
// allocated once. fd is the socket's descriptor, valid while the read
// loop runs inside its RawConn.Read callback.
type mmsgIO struct {
	fd  uintptr
	udp *net.UDPConn

	rhdr  []mmsghdr
	riov  []unix.Iovec
	rname []unix.RawSockaddrInet4
	rbuf  [][]byte

	whdr  []mmsghdr
	wiov  []unix.Iovec
	wname []unix.RawSockaddrInet4
}

func newMmsgIO(udp *net.UDPConn, size int) *mmsgIO {
	io := &mmsgIO{
		udp:  udp,
		rhdr: make([]mmsghdr, batchSize), riov: make([]unix.Iovec, batchSize),
		rname: make([]unix.RawSockaddrInet4, batchSize), rbuf: make([][]byte, batchSize),
		whdr: make([]mmsghdr, batchSize), wiov: make([]unix.Iovec, batchSize),
		wname: make([]unix.RawSockaddrInet4, batchSize),
	}
	for i := range io.rhdr {
		io.rbuf[i] = make([]byte, size)
		io.riov[i].Base = &io.rbuf[i][0]
		io.riov[i].SetLen(size)
		h := &io.rhdr[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&io.rname[i]))
		h.Iov = &io.riov[i]
		h.SetIovlen(1)
		w := &io.whdr[i].hdr
		w.Name = (*byte)(unsafe.Pointer(&io.wname[i]))
		w.Namelen = unix.SizeofSockaddrInet4
		w.Iov = &io.wiov[i]
		w.SetIovlen(1)
	}
	return io
}

// recv reads up to batchSize datagrams without waiting.
func (io *mmsgIO) recv() (int, unix.Errno) {
	for i := range io.rhdr {
		io.rhdr[i].hdr.Namelen = unix.SizeofSockaddrInet4
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, io.fd, uintptr(unsafe.Pointer(&io.rhdr[0])), batchSize,
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// packet returns datagram i of the last recv and its source (the zero
// AddrPort if it is not an IPv4 address).
func (io *mmsgIO) packet(i int) ([]byte, netip.AddrPort) {
	pkt := io.rbuf[i][:io.rhdr[i].len]
	sa := &io.rname[i]
	if io.rhdr[i].hdr.Namelen < unix.SizeofSockaddrInet4 || sa.Family != unix.AF_INET {
		return pkt, netip.AddrPort{}
	}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return pkt, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
}

// writeBatch implements batchWriter with one sendmmsg.
func (io *mmsgIO) writeBatch(b *replyBatch, from int) (int, error) {
	for {
		n, e := io.send(io.fd, b.to[from:b.n], b.bufs[from:b.n])
		switch e {
		case 0:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// The send buffer is full: the first reply goes out through
			// the runtime's poller, which waits until it has room.
			if _, err := io.udp.WriteToUDPAddrPort(b.bufs[from], b.to[from]); err != nil {
				return 0, err
			}
			return 1, nil
		}
		return 0, e
	}
}

// send sends bufs[i] to to[i] (at most batchSize) with one non-blocking
// sendmmsg on fd and returns how many the kernel took.
func (io *mmsgIO) send(fd uintptr, to []netip.AddrPort, bufs [][]byte) (int, unix.Errno) {
	k := min(len(to), batchSize)
	for i := range k {
		sa := &io.wname[i]
		sa.Family = unix.AF_INET
		sa.Addr = to[i].Addr().As4()
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(to[i].Port()>>8), byte(to[i].Port())
		io.wiov[i].Base = unsafe.SliceData(bufs[i])
		io.wiov[i].SetLen(len(bufs[i]))
	}
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&io.whdr[0])), uintptr(k),
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// readLoopMmsg is the read loop of an IPv4 UDP socket on Linux. It runs
// inside one RawConn.Read callback for the life of the server: each turn
// reads up to batchSize datagrams with one recvmmsg, handles them in
// order, and sends their replies with one sendmmsg. When a read returns
// fewer than batchSize datagrams the socket's queue was empty, and the
// loop parks on the runtime's poller until a datagram arrives without
// first trying another read that would only fail with EAGAIN: a datagram
// that arrives on an empty queue makes the socket readable again (and
// Linux's edge-triggered epoll reports it), so none is missed. An
// answer to a lone query then costs three syscalls (recvmmsg, sendmmsg,
// epoll_wait) instead of four. It returns false if the socket offers no
// raw access (the caller falls back to readLoopBatch).
func (s *Server) readLoopMmsg() bool {
	bc, ok := NewBatchConn(s.udp, s.cfg.MaxPacketSize)
	if !ok {
		return false
	}
	s.loopOut.batch = newReplyBatch(bc.io)
	var m Msg
	bc.Serve(s.closing.Load, func(n int) {
		s.stampBatch()
		for i := range n {
			pkt, from := bc.Packet(i)
			s.handlePacket(pkt, from, &m)
		}
		if s.loopOut.batch.n > 0 {
			s.flush(s.loopOut.batch)
		}
	}, s.readFailed)
	return true
}

// BatchConn is the socket I/O of Server's read loop on an IPv4 UDP socket
// on Linux, for other read loops (node.CoreNode): recvmmsg and sendmmsg
// called on the socket itself, with every header, iovec and address
// allocated once.
type BatchConn struct {
	rc syscall.RawConn
	io *mmsgIO
}

// NewBatchConn returns the batched I/O of udp, an IPv4 socket, for
// datagrams of up to maxPacket bytes (a longer one comes back one byte
// longer, for the caller to drop), or false where there is none (not
// Linux, or no raw access to the socket).
func NewBatchConn(udp *net.UDPConn, maxPacket int) (*BatchConn, bool) {
	rc, err := udp.SyscallConn()
	if err != nil {
		return nil, false
	}
	return &BatchConn{rc: rc, io: newMmsgIO(udp, maxPacket+1)}, true
}

// Serve reads until closing reports true or a read fails for good: each
// turn reads up to 32 datagrams with one recvmmsg and calls batch with
// how many it read (Packet returns them, until batch returns). When a
// read returns fewer than 32 the socket's queue was empty, and the loop
// parks on the runtime's poller until a datagram arrives, without first
// trying another read that would only fail with EAGAIN: a datagram that
// arrives on an empty queue makes the socket readable again (and Linux's
// edge-triggered epoll reports it), so none is missed. An answer to a
// lone query then costs three syscalls (recvmmsg, sendmmsg, epoll_wait)
// instead of four. failed is asked about every read error and returns
// whether it ends the loop (a closed socket does).
func (b *BatchConn) Serve(closing func() bool, batch func(n int), failed func(error) bool) {
	io := b.io
	for {
		var readErr error
		err := b.rc.Read(func(fd uintptr) bool {
			io.fd = fd
			for {
				if closing() {
					return true
				}
				n, e := io.recv()
				switch e {
				case 0:
				case unix.EAGAIN:
					return false // park until the socket is readable
				case unix.EINTR:
					continue
				default:
					readErr = e
					return true
				}
				batch(n)
				if n < batchSize {
					return false
				}
			}
		})
		if err == nil {
			err = readErr
		}
		if err == nil || failed(err) || errors.Is(err, unix.EBADF) {
			return
		}
	}
}

// Packet returns datagram i of the batch being handled and its source
// (the zero AddrPort if it is not an IPv4 address).
func (b *BatchConn) Packet(i int) ([]byte, netip.AddrPort) { return b.io.packet(i) }

// Send sends bufs[i] to to[i] (IPv4 addresses; at most 32) with one
// sendmmsg, waiting on the runtime's poller while the send buffer is
// full, and returns how many the kernel took: fewer than len(to) with an
// error when it refused the next one. Sends must not overlap; they may
// run inside batch.
func (b *BatchConn) Send(to []netip.AddrPort, bufs [][]byte) (int, error) {
	var n int
	var serr unix.Errno
	err := b.rc.Write(func(fd uintptr) bool {
		for {
			n, serr = b.io.send(fd, to, bufs)
			switch serr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until the socket has room
			}
			return true
		}
	})
	if err == nil && serr != 0 {
		err = serr
	}
	return n, err
}
