package krpc

import (
	"fmt"
	"slices"

	"github.com/anacrolix/torrent/bencode"
)

// Message kinds: the "y" key (BEP 5).
const (
	KindQuery    = "q"
	KindResponse = "r"
	KindError    = "e"
)

// Method names: the "q" key of queries.
const (
	MethodPing             = "ping"              // BEP 5
	MethodFindNode         = "find_node"         // BEP 5
	MethodGetPeers         = "get_peers"         // BEP 5
	MethodAnnouncePeer     = "announce_peer"     // BEP 5
	MethodGet              = "get"               // BEP 44
	MethodPut              = "put"               // BEP 44
	MethodSampleInfohashes = "sample_infohashes" // BEP 51
)

// KRPC error codes (BEP 5, BEP 44).
const (
	ErrCodeGeneric        = 201
	ErrCodeServer         = 202
	ErrCodeProtocol       = 203
	ErrCodeMethodUnknown  = 204
	ErrCodeValueTooBig    = 205 // BEP 44: v over 1000 bytes
	ErrCodeInvalidSig     = 206 // BEP 44
	ErrCodeSaltTooBig     = 207 // BEP 44: salt over 64 bytes
	ErrCodeCASMismatch    = 301 // BEP 44
	ErrCodeSeqLessCurrent = 302 // BEP 44
)

// Msg is one KRPC message: a query, a response or an error. It holds every
// top-level key that BEP 5, 32, 33, 42, 43, 44 and 51 define, so extensions
// add handlers, not wire changes.
type Msg struct {
	T  string       `bencode:"t"`            // transaction id, echoed verbatim
	Y  string       `bencode:"y"`            // "q", "r" or "e"
	Q  string       `bencode:"q,omitempty"`  // method, in queries
	A  *Args        `bencode:"a,omitempty"`  // arguments, in queries
	R  *Return      `bencode:"r,omitempty"`  // return values, in responses
	E  *Error       `bencode:"e,omitempty"`  // [code, message], in errors
	V  string       `bencode:"v,omitempty"`  // client version (BEP 5/20); never branch on it
	IP *CompactAddr `bencode:"ip,omitempty"` // requester's address as seen by the responder (BEP 42)
	RO int64        `bencode:"ro,omitempty"` // 1: sender is read-only (BEP 43)
}

// Args are the arguments of a query ("a").
type Args struct {
	ID          ID       `bencode:"id"`                     // sender's node id (BEP 5)
	Target      *ID      `bencode:"target,omitempty"`       // find_node, get (BEP 44), sample_infohashes (BEP 51)
	InfoHash    *ID      `bencode:"info_hash,omitempty"`    // get_peers, announce_peer
	Port        *int64   `bencode:"port,omitempty"`         // announce_peer
	ImpliedPort int64    `bencode:"implied_port,omitempty"` // announce_peer: use the UDP source port
	Token       string   `bencode:"token,omitempty"`        // announce_peer, put
	Want        []string `bencode:"want,omitempty"`         // "n4"/"n6" (BEP 32)
	NoSeed      int64    `bencode:"noseed,omitempty"`       // get_peers (BEP 33)
	Scrape      int64    `bencode:"scrape,omitempty"`       // get_peers (BEP 33)
	Seed        *int64   `bencode:"seed,omitempty"`         // announce_peer (BEP 33)

	// BEP 44 get/put.
	V    bencode.Bytes `bencode:"v,omitempty"`    // raw bencoded value, kept byte for byte
	K    string        `bencode:"k,omitempty"`    // ed25519 public key, 32 bytes
	Sig  string        `bencode:"sig,omitempty"`  // ed25519 signature, 64 bytes
	Salt string        `bencode:"salt,omitempty"` // at most 64 bytes
	Seq  *int64        `bencode:"seq,omitempty"`  // mutable sequence number
	Cas  *int64        `bencode:"cas,omitempty"`  // compare-and-swap seq
}

// Return holds the return values of a response ("r").
type Return struct {
	ID     ID            `bencode:"id"`               // responder's node id (BEP 5)
	Nodes  CompactNodes  `bencode:"nodes,omitempty"`  // 26-byte IPv4 node infos (BEP 5)
	Nodes6 CompactNodes6 `bencode:"nodes6,omitempty"` // 38-byte IPv6 node infos (BEP 32)
	Token  string        `bencode:"token,omitempty"`  // write token (BEP 5, 44)
	Values Peers         `bencode:"values,omitempty"` // compact peers (BEP 5, 32)

	// BEP 33 scrape bloom filters.
	BFsd *Bloom `bencode:"BFsd,omitempty"`
	BFpe *Bloom `bencode:"BFpe,omitempty"`

	// BEP 44 get.
	V   bencode.Bytes `bencode:"v,omitempty"`
	K   string        `bencode:"k,omitempty"`
	Sig string        `bencode:"sig,omitempty"`
	Seq *int64        `bencode:"seq,omitempty"`

	// BEP 51 sample_infohashes.
	Interval *int64   `bencode:"interval,omitempty"`
	Num      *int64   `bencode:"num,omitempty"`
	Samples  *Samples `bencode:"samples,omitempty"` // BEP 51: always sent in a reply, even empty; nil when absent
}

// Error is the "e" value of an error message: [code, message] (BEP 5).
type Error struct {
	Code int64
	Msg  string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("krpc error %d: %s", e.Code, e.Msg) }

// MarshalBencode encodes [code, message].
func (e Error) MarshalBencode() ([]byte, error) {
	return bencode.Marshal([]any{e.Code, e.Msg})
}

// UnmarshalBencode decodes [code, message]; a bare string is accepted as a
// message with code 201 (anacrolix sends that form).
func (e *Error) UnmarshalBencode(b []byte) error {
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		s, rest, err := readString(b)
		if err != nil || len(rest) != 0 {
			return fmt.Errorf("e: malformed string")
		}
		*e = Error{Code: ErrCodeGeneric, Msg: string(s)}
		return nil
	}
	if len(b) < 2 || b[0] != 'l' {
		return fmt.Errorf("e: not a list")
	}
	code, rest, err := readInt(b[1:])
	if err != nil {
		return fmt.Errorf("e: code is not an integer")
	}
	var msg []byte
	if len(rest) > 0 && rest[0] != 'e' {
		if msg, rest, err = readString(rest); err != nil {
			return fmt.Errorf("e: message is not a string")
		}
	}
	if len(rest) != 1 || rest[0] != 'e' {
		return fmt.Errorf("e: want [code, message]")
	}
	*e = Error{Code: code, Msg: string(msg)}
	return nil
}

// BloomLen is the size of a BEP 33 bloom filter in bytes.
const BloomLen = 256

// Bloom is a BEP 33 scrape bloom filter (2048 bits).
type Bloom [BloomLen]byte

// MarshalBencode encodes the 256-byte string.
func (f Bloom) MarshalBencode() ([]byte, error) { return AppendString(nil, f[:]), nil }

// UnmarshalBencode accepts exactly 256 bytes.
func (f *Bloom) UnmarshalBencode(b []byte) error {
	s, err := exactString(b, BloomLen, "bloom filter")
	if err != nil {
		return err
	}
	copy(f[:], s)
	return nil
}

// Samples is the BEP 51 "samples" value: concatenated 20-byte infohashes.
type Samples []ID

// MarshalBencode encodes the concatenation.
func (s Samples) MarshalBencode() ([]byte, error) {
	buf := make([]byte, 0, len(s)*IDLen)
	for _, id := range s {
		buf = append(buf, id[:]...)
	}
	return AppendString(nil, buf), nil
}

// UnmarshalBencode requires a multiple of 20 bytes.
func (s *Samples) UnmarshalBencode(b []byte) error {
	raw, rest, err := readString(b)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("samples: not a byte string")
	}
	if len(raw)%IDLen != 0 {
		return fmt.Errorf("samples: length %d is not a multiple of 20", len(raw))
	}
	out := make(Samples, len(raw)/IDLen)
	for i := range out {
		copy(out[i][:], raw[i*IDLen:])
	}
	*s = out
	return nil
}

// WantsNodes reports which node families a query's "want" asks for (BEP 32).
// Without "want", the family of the socket the query came in on decides.
func (a *Args) WantsNodes(queryOverIPv6 bool) (v4, v6 bool) {
	if a == nil || len(a.Want) == 0 {
		return !queryOverIPv6, queryOverIPv6
	}
	for _, w := range a.Want {
		switch w {
		case "n4":
			v4 = true
		case "n6":
			v6 = true
		}
	}
	return v4, v6
}

// Clone returns a copy of m that shares no memory with it: what a
// Decoder's message points into (m.A, m.R, m.IP and what they point to) is
// reused by its next Decode, so a message kept past that is cloned first.
func (m *Msg) Clone() *Msg {
	c := *m
	if m.A != nil {
		a := *m.A
		a.Target, a.InfoHash = cloneP(a.Target), cloneP(a.InfoHash)
		a.Port, a.Seed, a.Seq, a.Cas = cloneP(a.Port), cloneP(a.Seed), cloneP(a.Seq), cloneP(a.Cas)
		a.Want = slices.Clone(a.Want)
		a.V = slices.Clone(a.V)
		c.A = &a
	}
	if m.R != nil {
		r := *m.R
		r.Nodes, r.Nodes6, r.Values = slices.Clone(r.Nodes), slices.Clone(r.Nodes6), slices.Clone(r.Values)
		r.BFsd, r.BFpe = cloneP(r.BFsd), cloneP(r.BFpe)
		r.V = slices.Clone(r.V)
		r.Seq, r.Interval, r.Num = cloneP(r.Seq), cloneP(r.Interval), cloneP(r.Num)
		if r.Samples != nil {
			s := slices.Clone(*r.Samples)
			r.Samples = &s
		}
		c.R = &r
	}
	c.E, c.IP = cloneP(m.E), cloneP(m.IP)
	return &c
}

// cloneP returns a pointer to a copy of *p, or nil.
func cloneP[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
