package krpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// MinPacketLen is the smallest packet worth decoding (practice, libtorrent:
// 20 bytes or less is dropped unread).
const MinPacketLen = 21

// ErrDrop marks packets that must be dropped without a reply: not bencode,
// not canonical, not a dict, or without a usable "t" and "y" (docs/protocol.md, Handling a query).
// Replying to them would make the node an amplifier.
var ErrDrop = errors.New("krpc: undecodable packet")

// BodyError reports a message whose envelope ("t", "y") decoded but whose
// arguments, return values or error list did not. Decode still returns the
// envelope, so a query can be answered with error 203.
type BodyError struct {
	Err error
}

// Error implements error.
func (e *BodyError) Error() string { return "krpc: malformed body: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *BodyError) Unwrap() error { return e.Err }

// Decode parses one packet. Errors wrapping ErrDrop mean "drop silently";
// a *BodyError comes with the envelope filled in m. Decode never panics on
// any input and allocates in proportion to the packet only.
func Decode(b []byte, m *Msg) error { return decode(b, m, nil) }

// decode is Decode; a query's arguments go into blk when it is not nil
// (the read loop reuses one block, so a query costs no Args allocation),
// else into a new block.
func decode(b []byte, m *Msg, blk *argsBlock) error { return decodeWith(b, m, blk, nil) }

// Decoder decodes packets into storage it reuses from one call to the
// next: a query's arguments, a response's return value, its node list and
// the "ip" field (BEP 42) cost no allocation once the decoder has grown to
// fit them. What Decode leaves in the Msg (m.A, m.R, m.IP and what they
// point to, such as m.R.Nodes) is valid only until the next call; strings
// and the copied values (v, values, samples) are not reused. For a driver
// that handles one packet at a time, such as a simulator of many nodes
// on one goroutine. The zero Decoder is ready to use; it is not safe for
// concurrent use.
type Decoder struct {
	args  argsBlock
	ret   returnBlock
	nodes []NodeInfo
	ip    CompactAddr
}

// Decode is the package's Decode into the decoder's reused storage.
func (d *Decoder) Decode(b []byte, m *Msg) error { return decodeWith(b, m, &d.args, d) }

// decodeWith is decode; a response's return value, nodes and ip go into
// d when it is not nil.
func decodeWith(b []byte, m *Msg, blk *argsBlock, d *Decoder) error {
	*m = Msg{}
	if len(b) < MinPacketLen || b[0] != 'd' || b[len(b)-1] != 'e' {
		return fmt.Errorf("%w: not a dict of plausible size", ErrDrop)
	}
	if err := CheckCanonical(b, packetLimits); err != nil {
		return decodeLax(b, m, err)
	}
	var a, r, e []byte
	var haveT bool
	err := eachEntry(b, func(key, val []byte) error {
		switch string(key) {
		case "t":
			s, _, err := readString(val)
			if err != nil {
				return fmt.Errorf("t is not a string")
			}
			m.T, haveT = string(s), true
		case "y":
			s, _, err := readString(val)
			if err != nil || len(s) != 1 {
				return fmt.Errorf("y is not a 1-byte string")
			}
			m.Y = string(s)
		case "q":
			s, _, err := readString(val)
			if err != nil {
				m.Q = "\x00" // not a string: answered 203 below
			} else {
				m.Q = methodName(s)
			}
		case "a":
			a = val
		case "r":
			r = val
		case "e":
			e = val
		case "v":
			if s, _, err := readString(val); err == nil {
				m.V = string(s)
			}
		case "ip":
			var ip *CompactAddr
			if d != nil {
				ip = &d.ip
			} else {
				ip = new(CompactAddr)
			}
			if ip.UnmarshalBencode(val) == nil {
				m.IP = ip
			}
		case "ro":
			if v, _, err := readInt(val); err == nil {
				m.RO = v
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDrop, err)
	}
	if !haveT {
		return fmt.Errorf("%w: no transaction id", ErrDrop)
	}
	switch m.Y {
	case KindQuery:
		if m.Q == "" || m.Q == "\x00" {
			m.Q = ""
			return &BodyError{errors.New("q missing or not a string")}
		}
		if a == nil {
			return &BodyError{errors.New("a missing")}
		}
		args, sawID, err := decodeArgsID(a, blk)
		// A missing id is reported first; a decode error may have ended
		// the walk before the id, so only then is a looked at again.
		if !sawID && (err == nil || !hasKey(a, "id")) {
			return &BodyError{errors.New("a.id missing")}
		}
		if err != nil {
			return &BodyError{fmt.Errorf("decode a: %w", err)}
		}
		m.A = args
	case KindResponse:
		if r == nil || !hasKey(r, "id") {
			return &BodyError{errors.New("r or r.id missing")}
		}
		ret, err := decodeReturnInto(r, d)
		if err != nil {
			return &BodyError{fmt.Errorf("decode r: %w", err)}
		}
		m.R = ret
	case KindError:
		m.E = new(Error)
		if e == nil {
			m.E = &Error{Code: ErrCodeGeneric}
			return &BodyError{errors.New("e missing")}
		}
		if err := m.E.UnmarshalBencode(e); err != nil {
			m.E = &Error{Code: ErrCodeGeneric}
			return &BodyError{fmt.Errorf("decode e: %w", err)}
		}
	default:
		return fmt.Errorf("%w: y is %q", ErrDrop, m.Y)
	}
	return nil
}

// Encode returns the canonical bencoding of m.
func Encode(m *Msg) ([]byte, error) {
	return AppendEncode(make([]byte, 0, 256), m)
}

// AppendEncode appends the canonical bencoding of m to dst and returns the
// extended buffer; on error dst is returned unchanged. It writes the same
// bytes as the reflective bencode.Marshal of m (keys sorted, omitempty
// honoured), without reflection, so a reply costs no allocation when dst
// has room (the read loop reuses one buffer).
func AppendEncode(dst []byte, m *Msg) ([]byte, error) {
	out, err := appendMsg(dst, m)
	if err != nil {
		return dst, fmt.Errorf("encode %s %q: %w", m.Y, m.Q, err)
	}
	return out, nil
}

// eachEntry calls f for every key and raw value of the canonical dict b.
func eachEntry(b []byte, f func(key, val []byte) error) error {
	if len(b) < 2 || b[0] != 'd' {
		return errors.New("not a dict")
	}
	b = b[1:]
	for len(b) > 0 && b[0] != 'e' {
		key, rest, err := readString(b)
		if err != nil {
			return err
		}
		n, err := skipValue(rest)
		if err != nil {
			return err
		}
		if err := f(key, rest[:n]); err != nil {
			return err
		}
		b = rest[n:]
	}
	return nil
}

// decodeLax handles a packet that is not canonical bencode (err
// says why). A well-formed query whose dict keys are merely out of order or
// repeated, somewhere, gets its envelope ("t", "y", "q") decoded and a
// *BodyError, so the server answers it 203 (BEP 44: a put whose v is not
// canonical is refused with 203); everything else is dropped.
func decodeLax(b []byte, m *Msg, cause error) error {
	if !wellFormed(b) {
		return fmt.Errorf("%w: %v", ErrDrop, cause)
	}
	var haveT bool
	b = b[1:]
	for len(b) > 0 && b[0] != 'e' {
		key, rest, err := readString(b)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDrop, cause)
		}
		n, err := skipValue(rest)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDrop, cause)
		}
		val, after := rest[:n], rest[n:]
		if s, _, err := readString(val); err == nil {
			switch string(key) {
			case "t":
				m.T, haveT = string(s), true
			case "y":
				m.Y = string(s)
			case "q":
				m.Q = string(s)
			}
		}
		b = after
	}
	if !haveT || m.Y != KindQuery || m.Q == "" {
		*m = Msg{}
		return fmt.Errorf("%w: %v", ErrDrop, cause)
	}
	return &BodyError{fmt.Errorf("not canonical bencode: %w", cause)}
}

// hasKey reports whether the dict b has key.
func hasKey(b []byte, key string) bool {
	if len(b) == 0 || b[0] != 'd' {
		return false
	}
	found := false
	_ = eachEntry(b, func(k, _ []byte) error {
		if bytes.Equal(k, []byte(key)) {
			found = true
		}
		return nil
	})
	return found
}

// The hand-written codec below replaces reflection on the hot path (decode a
// query's arguments, encode a reply). Keys are written in sorted byte order
// (BEP 3: canonical dicts); krpc/codec_bench_test.go checks both directions
// byte for byte against anacrolix's reflective bencode on every message of
// the benchmarks and the test vectors, and fuzzes the comparison.

func appendInt(dst []byte, v int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, 'e')
}

func appendID(dst []byte, id *ID) []byte {
	dst = append(dst, "20:"...)
	return append(dst, id[:]...)
}

// appendNodes writes compact node infos (BEP 5 "nodes", BEP 32 "nodes6").
func appendNodes(dst []byte, ns []NodeInfo, v6 bool) ([]byte, error) {
	per := CompactNodeLen4
	if v6 {
		per = CompactNodeLen6
	}
	dst = strconv.AppendInt(dst, int64(len(ns)*per), 10)
	dst = append(dst, ':')
	for _, n := range ns {
		ip := n.Addr.Addr()
		dst = append(dst, n.ID[:]...)
		switch {
		case v6 && ip.Is6():
			b := ip.As16()
			dst = append(dst, b[:]...)
		case !v6 && ip.Unmap().Is4():
			b := ip.Unmap().As4()
			dst = append(dst, b[:]...)
		default:
			return nil, fmt.Errorf("nodes: %s is not of the list's address family", n.Addr)
		}
		dst = binary.BigEndian.AppendUint16(dst, n.Addr.Port())
	}
	return dst, nil
}

func appendPeer(dst []byte, a netip.AddrPort) []byte {
	if a.Addr().Unmap().Is4() {
		dst = append(dst, "6:"...)
	} else {
		dst = append(dst, "18:"...)
	}
	return AppendCompactPeer(dst, a)
}

func appendMsg(dst []byte, m *Msg) ([]byte, error) {
	var err error
	dst = append(dst, 'd')
	if m.A != nil {
		dst = AppendString(dst, "a")
		if dst, err = appendArgs(dst, m.A); err != nil {
			return nil, err
		}
	}
	if m.E != nil {
		dst = AppendString(dst, "e")
		dst = append(dst, 'l')
		dst = appendInt(dst, m.E.Code)
		dst = AppendString(dst, m.E.Msg)
		dst = append(dst, 'e')
	}
	if m.IP != nil {
		dst = AppendString(dst, "ip")
		dst = appendPeer(dst, netip.AddrPort(*m.IP))
	}
	if m.Q != "" {
		dst = AppendString(dst, "q")
		dst = AppendString(dst, m.Q)
	}
	if m.R != nil {
		dst = AppendString(dst, "r")
		if dst, err = appendReturn(dst, m.R); err != nil {
			return nil, err
		}
	}
	if m.RO != 0 {
		dst = AppendString(dst, "ro")
		dst = appendInt(dst, m.RO)
	}
	dst = AppendString(dst, "t")
	dst = AppendString(dst, m.T)
	if m.V != "" {
		dst = AppendString(dst, "v")
		dst = AppendString(dst, m.V)
	}
	dst = AppendString(dst, "y")
	dst = AppendString(dst, m.Y)
	return append(dst, 'e'), nil
}

// errEmptyRaw reports a raw value ("v") that is set but empty: no bencoding.
var errEmptyRaw = errors.New("v: empty raw value")

func appendArgs(dst []byte, a *Args) ([]byte, error) {
	dst = append(dst, 'd')
	if a.Cas != nil {
		dst = appendInt(AppendString(dst, "cas"), *a.Cas)
	}
	dst = appendID(AppendString(dst, "id"), &a.ID)
	if a.ImpliedPort != 0 {
		dst = appendInt(AppendString(dst, "implied_port"), a.ImpliedPort)
	}
	if a.InfoHash != nil {
		dst = appendID(AppendString(dst, "info_hash"), a.InfoHash)
	}
	if a.K != "" {
		dst = AppendString(AppendString(dst, "k"), a.K)
	}
	if a.NoSeed != 0 {
		dst = appendInt(AppendString(dst, "noseed"), a.NoSeed)
	}
	if a.Port != nil {
		dst = appendInt(AppendString(dst, "port"), *a.Port)
	}
	if a.Salt != "" {
		dst = AppendString(AppendString(dst, "salt"), a.Salt)
	}
	if a.Scrape != 0 {
		dst = appendInt(AppendString(dst, "scrape"), a.Scrape)
	}
	if a.Seed != nil {
		dst = appendInt(AppendString(dst, "seed"), *a.Seed)
	}
	if a.Seq != nil {
		dst = appendInt(AppendString(dst, "seq"), *a.Seq)
	}
	if a.Sig != "" {
		dst = AppendString(AppendString(dst, "sig"), a.Sig)
	}
	if a.Target != nil {
		dst = appendID(AppendString(dst, "target"), a.Target)
	}
	if a.Token != "" {
		dst = AppendString(AppendString(dst, "token"), a.Token)
	}
	if a.V != nil {
		if len(a.V) == 0 {
			return nil, errEmptyRaw
		}
		dst = append(AppendString(dst, "v"), a.V...) // raw bencoded value
	}
	if a.Want != nil {
		dst = append(AppendString(dst, "want"), 'l')
		for _, w := range a.Want {
			dst = AppendString(dst, w)
		}
		dst = append(dst, 'e')
	}
	return append(dst, 'e'), nil
}

func appendReturn(dst []byte, r *Return) ([]byte, error) {
	var err error
	dst = append(dst, 'd')
	if r.BFpe != nil {
		dst = AppendString(AppendString(dst, "BFpe"), r.BFpe[:])
	}
	if r.BFsd != nil {
		dst = AppendString(AppendString(dst, "BFsd"), r.BFsd[:])
	}
	dst = appendID(AppendString(dst, "id"), &r.ID)
	if r.Interval != nil {
		dst = appendInt(AppendString(dst, "interval"), *r.Interval)
	}
	if r.K != "" {
		dst = AppendString(AppendString(dst, "k"), r.K)
	}
	if r.Nodes != nil {
		if dst, err = appendNodes(AppendString(dst, "nodes"), r.Nodes, false); err != nil {
			return nil, err
		}
	}
	if r.Nodes6 != nil {
		if dst, err = appendNodes(AppendString(dst, "nodes6"), r.Nodes6, true); err != nil {
			return nil, err
		}
	}
	if r.Num != nil {
		dst = appendInt(AppendString(dst, "num"), *r.Num)
	}
	if r.Samples != nil {
		dst = AppendString(dst, "samples")
		dst = strconv.AppendInt(dst, int64(len(*r.Samples)*IDLen), 10)
		dst = append(dst, ':')
		for i := range *r.Samples {
			dst = append(dst, (*r.Samples)[i][:]...)
		}
	}
	if r.Seq != nil {
		dst = appendInt(AppendString(dst, "seq"), *r.Seq)
	}
	if r.Sig != "" {
		dst = AppendString(AppendString(dst, "sig"), r.Sig)
	}
	if r.Token != "" {
		dst = AppendString(AppendString(dst, "token"), r.Token)
	}
	if r.V != nil {
		if len(r.V) == 0 {
			return nil, errEmptyRaw
		}
		dst = append(AppendString(dst, "v"), r.V...) // raw bencoded value
	}
	if r.Values != nil {
		dst = append(AppendString(dst, "values"), 'l')
		for _, p := range r.Values {
			dst = appendPeer(dst, p)
		}
		dst = append(dst, 'e')
	}
	return append(dst, 'e'), nil
}

// argsBlock holds a decoded Args with the storage its pointer fields point
// into, so decoding a query costs one allocation for all of them.
type argsBlock struct {
	a                    Args
	target, infoHash     ID
	port, seed, seq, cas int64
}

// decodeArgs decodes the canonical dict b (already checked by
// CheckCanonical) as bencode.Unmarshal into an Args would: unknown keys
// are ignored, a value of the wrong type is an error.
func decodeArgs(b []byte) (*Args, error) { return decodeArgsInto(b, nil) }

// decodeArgsInto is decodeArgs into blk (reset first), or into a new block
// if blk is nil.
func decodeArgsInto(b []byte, blk *argsBlock) (*Args, error) {
	a, _, err := decodeArgsID(b, blk)
	return a, err
}

// decodeArgsID is decodeArgsInto that also reports whether the walk met
// the key "id" (before an error, if any).
func decodeArgsID(b []byte, blk *argsBlock) (*Args, bool, error) {
	sawID := false
	if blk == nil {
		blk = &argsBlock{}
	} else {
		*blk = argsBlock{}
	}
	err := eachEntry(b, func(key, val []byte) error {
		var err error
		switch string(key) {
		case "id":
			sawID = true
			err = blk.a.ID.UnmarshalBencode(val)
		case "target":
			if err = blk.target.UnmarshalBencode(val); err == nil {
				blk.a.Target = &blk.target
			}
		case "info_hash":
			if err = blk.infoHash.UnmarshalBencode(val); err == nil {
				blk.a.InfoHash = &blk.infoHash
			}
		case "port":
			if blk.port, err = wholeInt(val, "port"); err == nil {
				blk.a.Port = &blk.port
			}
		case "seed":
			if blk.seed, err = wholeInt(val, "seed"); err == nil {
				blk.a.Seed = &blk.seed
			}
		case "seq":
			if blk.seq, err = wholeInt(val, "seq"); err == nil {
				blk.a.Seq = &blk.seq
			}
		case "cas":
			if blk.cas, err = wholeInt(val, "cas"); err == nil {
				blk.a.Cas = &blk.cas
			}
		case "implied_port":
			blk.a.ImpliedPort, err = wholeInt(val, "implied_port")
		case "noseed":
			blk.a.NoSeed, err = wholeInt(val, "noseed")
		case "scrape":
			blk.a.Scrape, err = wholeInt(val, "scrape")
		case "token":
			blk.a.Token, err = wholeString(val, "token")
		case "k":
			blk.a.K, err = wholeString(val, "k")
		case "sig":
			blk.a.Sig, err = wholeString(val, "sig")
		case "salt":
			blk.a.Salt, err = wholeString(val, "salt")
		case "v":
			blk.a.V = append([]byte(nil), val...) // raw value, copied out of the packet
		case "want":
			blk.a.Want, err = stringList(val, "want")
		}
		return err
	})
	if err != nil {
		return nil, sawID, err
	}
	return &blk.a, sawID, nil
}

// wholeInt decodes val, which must be exactly one integer.
func wholeInt(val []byte, what string) (int64, error) {
	v, rest, err := readInt(val)
	if err != nil || len(rest) != 0 {
		return 0, fmt.Errorf("%s: not an integer", what)
	}
	return v, nil
}

// wholeString decodes val, which must be exactly one byte string.
func wholeString(val []byte, what string) (string, error) {
	s, rest, err := readString(val)
	if err != nil || len(rest) != 0 {
		return "", fmt.Errorf("%s: not a byte string", what)
	}
	return string(s), nil
}

// stringList decodes a list of byte strings.
func stringList(val []byte, what string) ([]string, error) {
	if len(val) < 2 || val[0] != 'l' {
		return nil, fmt.Errorf("%s: not a list", what)
	}
	out := []string{} // a present empty list stays non-nil, as bencode.Unmarshal leaves it
	b := val[1:]
	for len(b) > 0 && b[0] != 'e' {
		s, rest, err := readString(b)
		if err != nil {
			return nil, fmt.Errorf("%s: entry is not a byte string", what)
		}
		out = append(out, string(s))
		b = rest
	}
	if len(b) != 1 {
		return nil, fmt.Errorf("%s: malformed list", what)
	}
	return out, nil
}

// methodName returns s as a string, without allocating for the methods of
// this package.
func methodName(s []byte) string {
	switch string(s) {
	case MethodPing:
		return MethodPing
	case MethodFindNode:
		return MethodFindNode
	case MethodGetPeers:
		return MethodGetPeers
	case MethodAnnouncePeer:
		return MethodAnnouncePeer
	case MethodGet:
		return MethodGet
	case MethodPut:
		return MethodPut
	case MethodSampleInfohashes:
		return MethodSampleInfohashes
	}
	return string(s)
}

// returnBlock holds a decoded Return with the storage its integer pointers
// point into: one allocation for all of them.
type returnBlock struct {
	r                  Return
	seq, interval, num int64
}

// decodeReturn decodes the canonical dict b (already checked by
// CheckCanonical) as bencode.Unmarshal into a Return would.
func decodeReturn(b []byte) (*Return, error) { return decodeReturnInto(b, nil) }

// decodeReturnInto is decodeReturn into d's reused block and node list,
// or into new ones if d is nil.
func decodeReturnInto(b []byte, d *Decoder) (*Return, error) {
	var blk *returnBlock
	if d != nil {
		blk = &d.ret
		*blk = returnBlock{}
	} else {
		blk = &returnBlock{}
	}
	r := &blk.r
	err := eachEntry(b, func(key, val []byte) error {
		var err error
		switch string(key) {
		case "id":
			err = r.ID.UnmarshalBencode(val)
		case "nodes":
			if d != nil {
				d.nodes, err = appendParsedNodes(d.nodes[:0], val, CompactNodeLen4, "nodes")
				r.Nodes = d.nodes
			} else {
				err = r.Nodes.UnmarshalBencode(val)
			}
		case "nodes6":
			err = r.Nodes6.UnmarshalBencode(val)
		case "token":
			r.Token, err = wholeString(val, "token")
		case "values":
			err = r.Values.UnmarshalBencode(val)
		case "BFsd":
			r.BFsd = new(Bloom)
			err = r.BFsd.UnmarshalBencode(val)
		case "BFpe":
			r.BFpe = new(Bloom)
			err = r.BFpe.UnmarshalBencode(val)
		case "v":
			r.V = append([]byte(nil), val...) // raw value, copied out of the packet
		case "k":
			r.K, err = wholeString(val, "k")
		case "sig":
			r.Sig, err = wholeString(val, "sig")
		case "seq":
			if blk.seq, err = wholeInt(val, "seq"); err == nil {
				r.Seq = &blk.seq
			}
		case "interval":
			if blk.interval, err = wholeInt(val, "interval"); err == nil {
				r.Interval = &blk.interval
			}
		case "num":
			if blk.num, err = wholeInt(val, "num"); err == nil {
				r.Num = &blk.num
			}
		case "samples":
			r.Samples = new(Samples)
			err = r.Samples.UnmarshalBencode(val)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}
