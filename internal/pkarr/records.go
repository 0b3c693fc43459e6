package pkarr

// DNS records written as text ("NAME TYPE VALUE [TTL]") and their packet,
// encoded and decoded with golang.org/x/net/dns/dnsmessage. Names are
// relative to the key: "@" is the key itself ("<z-base-32 key>."), any
// other name gets the key appended, as the Pkarr clients do.

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// DefaultTTL is the TTL of a record written without one.
const DefaultTTL = 300

// ErrRecord is wrapped by every error about a record's text or packet.
var ErrRecord = errors.New("bad DNS record")

// Record is one resource record. Name is absolute (ends in the key and a
// dot) once it has been through EncodePacket or DecodePacket.
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // A, AAAA, TXT, CNAME, HTTPS or SVCB
	TTL   uint32 `json:"ttl"`
	Value string `json:"value"` // as ParseRecord reads it and String prints it
}

// String prints r the way dig prints an answer.
func (r Record) String() string {
	return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, r.TTL, r.Type, r.Value)
}

// ParseRecord reads "NAME TYPE VALUE [TTL]". A TXT value may be a
// double-quoted string holding spaces; an HTTPS or SVCB value is
// "PRIORITY TARGET [KEY=VALUE]..." with the keys alpn, port, ipv4hint,
// ipv6hint (comma-separated lists) and no-default-alpn.
func ParseRecord(s string) (Record, error) {
	f, err := fields(s)
	if err != nil {
		return Record{}, fmt.Errorf("%w %q: %w", ErrRecord, s, err)
	}
	if len(f) < 3 {
		return Record{}, fmt.Errorf("%w %q: want NAME TYPE VALUE [TTL]", ErrRecord, s)
	}
	if err := checkName(f[0]); err != nil {
		return Record{}, fmt.Errorf("%w %q: %w", ErrRecord, s, err)
	}
	r := Record{Name: f[0], Type: strings.ToUpper(f[1]), TTL: DefaultTTL}
	val := f[2:]
	want := 1 // value fields
	if r.Type == "HTTPS" || r.Type == "SVCB" {
		want = len(val)
		if n := len(val); n > 2 && isUint(val[n-1]) {
			want = n - 1
		}
	}
	switch len(val) - want {
	case 0:
	case 1:
		ttl, err := strconv.ParseUint(val[want], 10, 32)
		if err != nil {
			return Record{}, fmt.Errorf("%w %q: TTL %q: want a number of seconds", ErrRecord, s, val[want])
		}
		r.TTL = uint32(ttl)
	default:
		return Record{}, fmt.Errorf("%w %q: too many fields (quote a TXT value holding spaces)", ErrRecord, s)
	}
	r.Value = strings.Join(val[:want], " ")
	if _, err := r.body(); err != nil {
		return Record{}, fmt.Errorf("%w %q: %w", ErrRecord, s, err)
	}
	if r.Type == "TXT" {
		r.Value = strconv.Quote(r.Value)
	}
	return r, nil
}

func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// fields splits s at spaces, keeping double-quoted strings (Go syntax)
// whole, without their quotes.
func fields(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, errors.New("unterminated quoted string")
			}
			u, _ := strconv.Unquote(q)
			out = append(out, u)
			s = s[len(q):]
			continue
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
}

// checkName accepts "@" or a name of dot-separated labels, each of 1 to
// 63 printable ASCII characters other than a quote or a backslash: a name
// that prints as it parses. A quoted name (" ") would become a label the
// text form cannot hold.
func checkName(name string) error {
	if name == "@" {
		return nil
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("name %q: want labels of 1 to 63 characters", name)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
				return fmt.Errorf("name %q: character %q", name, c)
			}
		}
	}
	return nil
}

// absName makes a record name absolute under origin (a z-base-32 key).
func absName(name, origin string) string {
	name = strings.TrimSuffix(name, ".")
	switch {
	case name == "@" || name == "" || name == origin:
		return origin + "."
	case strings.HasSuffix(name, "."+origin):
		return name + "."
	}
	return name + "." + origin + "."
}

// svcbKeys are the SvcParamKeys ParseRecord knows (RFC 9460, section 14.3.2).
var svcbKeys = map[string]dnsmessage.SVCParamKey{
	"mandatory": dnsmessage.SVCParamMandatory, "alpn": dnsmessage.SVCParamALPN,
	"no-default-alpn": dnsmessage.SVCParamNoDefaultALPN, "port": dnsmessage.SVCParamPort,
	"ipv4hint": dnsmessage.SVCParamIPv4Hint, "ipv6hint": dnsmessage.SVCParamIPv6Hint,
}

// body is r's resource body (the TXT value unquoted).
func (r Record) body() (dnsmessage.ResourceBody, error) {
	switch r.Type {
	case "A", "AAAA":
		a, err := netip.ParseAddr(r.Value)
		switch {
		case err != nil:
			return nil, err
		case r.Type == "A" && a.Is4():
			return &dnsmessage.AResource{A: a.As4()}, nil
		case r.Type == "AAAA" && a.Is6() && !a.Is4In6():
			return &dnsmessage.AAAAResource{AAAA: a.As16()}, nil
		}
		return nil, fmt.Errorf("%s is not an IPv%s address", r.Value, map[string]string{"A": "4", "AAAA": "6"}[r.Type])
	case "CNAME":
		n, err := dnsmessage.NewName(strings.TrimSuffix(r.Value, ".") + ".")
		if err != nil {
			return nil, err
		}
		return &dnsmessage.CNAMEResource{CNAME: n}, nil
	case "TXT":
		v := r.Value
		if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = u
		}
		var parts []string // at most 255 bytes each (RFC 1035, 3.3.14)
		for len(v) > 255 {
			parts, v = append(parts, v[:255]), v[255:]
		}
		return &dnsmessage.TXTResource{TXT: append(parts, v)}, nil
	case "HTTPS", "SVCB":
		s, err := parseSVCB(r.Value)
		if err != nil {
			return nil, err
		}
		if r.Type == "HTTPS" {
			return &dnsmessage.HTTPSResource{SVCBResource: s}, nil
		}
		return &s, nil
	}
	return nil, fmt.Errorf("type %q: want A, AAAA, TXT, CNAME, HTTPS or SVCB", r.Type)
}

func parseSVCB(v string) (dnsmessage.SVCBResource, error) {
	f := strings.Fields(v)
	if len(f) < 2 {
		return dnsmessage.SVCBResource{}, errors.New("want PRIORITY TARGET, then KEY=VALUE parameters")
	}
	prio, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return dnsmessage.SVCBResource{}, fmt.Errorf("priority %q: %w", f[0], err)
	}
	if strings.ContainsAny(f[1], "\"\\") {
		// Not a host name, and its text form would not read back.
		return dnsmessage.SVCBResource{}, fmt.Errorf("target %q: quotes and backslashes are not allowed", f[1])
	}
	target := "."
	if f[1] != "." {
		target = strings.TrimSuffix(f[1], ".") + "."
	}
	tn, err := dnsmessage.NewName(target)
	if err != nil {
		return dnsmessage.SVCBResource{}, err
	}
	s := dnsmessage.SVCBResource{Priority: uint16(prio), Target: tn}
	for _, p := range f[2:] {
		k, val, _ := strings.Cut(p, "=")
		key, ok := svcbKeys[k]
		if !ok {
			return s, fmt.Errorf("SvcParam %q: want one of alpn, port, ipv4hint, ipv6hint, no-default-alpn, mandatory", k)
		}
		if _, dup := s.GetParam(key); dup {
			return s, fmt.Errorf("SvcParam %q given twice", k)
		}
		b, err := svcbValue(key, val)
		if err != nil {
			return s, fmt.Errorf("SvcParam %s: %w", k, err)
		}
		s.SetParam(key, b) // keeps the keys in increasing order
	}
	return s, nil
}

// svcbValue encodes one SvcParamValue (RFC 9460, section 7).
func svcbValue(key dnsmessage.SVCParamKey, val string) ([]byte, error) {
	var b []byte
	list := strings.Split(val, ",")
	switch key {
	case dnsmessage.SVCParamNoDefaultALPN:
		if val != "" {
			return nil, errors.New("takes no value")
		}
		return []byte{}, nil
	case dnsmessage.SVCParamALPN:
		for _, id := range list {
			if id == "" || len(id) > 255 {
				return nil, fmt.Errorf("protocol id %q", id)
			}
			b = append(append(b, byte(len(id))), id...)
		}
	case dnsmessage.SVCParamPort:
		p, err := strconv.ParseUint(val, 10, 16)
		if err != nil {
			return nil, err
		}
		b = []byte{byte(p >> 8), byte(p)}
	case dnsmessage.SVCParamIPv4Hint, dnsmessage.SVCParamIPv6Hint:
		for _, s := range list {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Is4() != (key == dnsmessage.SVCParamIPv4Hint) {
				return nil, fmt.Errorf("address %q", s)
			}
			b = append(b, a.AsSlice()...)
		}
	case dnsmessage.SVCParamMandatory:
		for _, k := range list {
			mk, ok := svcbKeys[k]
			if !ok {
				return nil, fmt.Errorf("key %q", k)
			}
			b = append(b, byte(mk>>8), byte(mk))
		}
	}
	return b, nil
}

// EncodePacket encodes records as the answers of a DNS response, names
// made absolute under origin (the z-base-32 key).
func EncodePacket(origin string, records []Record) ([]byte, error) {
	msg := dnsmessage.Message{Header: dnsmessage.Header{Response: true, Authoritative: true}}
	for i := range records {
		r := &records[i]
		body, err := r.body()
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrRecord, r.Name, err)
		}
		r.Name = absName(r.Name, origin)
		name, err := dnsmessage.NewName(r.Name)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrRecord, r.Name, err)
		}
		msg.Answers = append(msg.Answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: r.TTL},
			Body:   body,
		})
	}
	b, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	return b, nil
}

// DecodePacket returns the answers of a DNS packet; records of other
// types are shown with their type number and the hex of their data.
func DecodePacket(packet []byte) ([]Record, error) {
	var p dnsmessage.Parser
	if _, err := p.Start(packet); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	rs, err := p.AllAnswers()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	out := make([]Record, 0, len(rs))
	for _, r := range rs {
		out = append(out, Record{Name: r.Header.Name.String(), TTL: r.Header.TTL, Type: typeName(r.Header.Type), Value: valueString(r.Body)})
	}
	return out, nil
}

func typeName(t dnsmessage.Type) string {
	return strings.TrimPrefix(t.String(), "Type")
}

// valueString prints a resource body as ParseRecord reads it.
func valueString(b dnsmessage.ResourceBody) string {
	switch b := b.(type) {
	case *dnsmessage.AResource:
		return netip.AddrFrom4(b.A).String()
	case *dnsmessage.AAAAResource:
		return netip.AddrFrom16(b.AAAA).String()
	case *dnsmessage.CNAMEResource:
		return b.CNAME.String()
	case *dnsmessage.TXTResource:
		return strconv.Quote(strings.Join(b.TXT, ""))
	case *dnsmessage.HTTPSResource:
		return svcbString(&b.SVCBResource)
	case *dnsmessage.SVCBResource:
		return svcbString(b)
	case *dnsmessage.UnknownResource:
		return fmt.Sprintf("\\# %d %x", len(b.Data), b.Data)
	}
	return fmt.Sprintf("%v", b)
}

func svcbString(s *dnsmessage.SVCBResource) string {
	parts := []string{strconv.Itoa(int(s.Priority)), s.Target.String()}
	names := make(map[dnsmessage.SVCParamKey]string, len(svcbKeys))
	for n, k := range svcbKeys {
		names[k] = n
	}
	for _, p := range s.Params {
		name, ok := names[p.Key]
		if !ok {
			parts = append(parts, fmt.Sprintf("key%d=%x", p.Key, p.Value))
			continue
		}
		var vals []string
		v := p.Value
		switch p.Key {
		case dnsmessage.SVCParamALPN:
			for len(v) > 0 && int(v[0]) < len(v) {
				vals, v = append(vals, string(v[1:1+v[0]])), v[1+v[0]:]
			}
		case dnsmessage.SVCParamPort:
			if len(v) == 2 {
				vals = append(vals, strconv.Itoa(int(v[0])<<8|int(v[1])))
			}
		case dnsmessage.SVCParamIPv4Hint, dnsmessage.SVCParamIPv6Hint:
			n := 4
			if p.Key == dnsmessage.SVCParamIPv6Hint {
				n = 16
			}
			for ; len(v) >= n; v = v[n:] {
				a, _ := netip.AddrFromSlice(v[:n])
				vals = append(vals, a.String())
			}
		case dnsmessage.SVCParamMandatory:
			for ; len(v) >= 2; v = v[2:] {
				k := dnsmessage.SVCParamKey(v[0])<<8 | dnsmessage.SVCParamKey(v[1])
				vals = append(vals, cmpName(names, k))
			}
		}
		if p.Key == dnsmessage.SVCParamNoDefaultALPN {
			parts = append(parts, name)
			continue
		}
		parts = append(parts, name+"="+strings.Join(vals, ","))
	}
	return strings.Join(parts, " ")
}

func cmpName(names map[dnsmessage.SVCParamKey]string, k dnsmessage.SVCParamKey) string {
	if n, ok := names[k]; ok {
		return n
	}
	return "key" + strconv.Itoa(int(k))
}
