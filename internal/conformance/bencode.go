package conformance

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// The suite keeps its own small bencode codec, apart from the node's, so
// that it can write packets no conforming encoder would (unsorted keys,
// wrong types) and read replies whatever their form. Whether a reply is
// canonical is judged by krpc.CheckCanonical, the module's one scanner,
// whose own tests pin it to BEP 3 and to anacrolix's codec.

// dict is a bencoded dictionary to encode; keys are sorted when encoded
// (BEP 3). Values are string, []byte, int, int64, dict, list or raw.
type dict map[string]any

// list is a bencoded list to encode.
type list []any

// raw is bencode written verbatim, for values that must not be re-encoded.
type raw []byte

// encode returns the bencoding of v. It panics on a type it does not know:
// every packet the suite sends is built in this package.
func encode(v any) []byte { return appendValue(nil, v) }

func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		return append(append(b, ':'), v...)
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		return append(append(b, ':'), v...)
	case int:
		return append(strconv.AppendInt(append(b, 'i'), int64(v), 10), 'e')
	case int64:
		return append(strconv.AppendInt(append(b, 'i'), v, 10), 'e')
	case raw:
		return append(b, v...)
	case list:
		b = append(b, 'l')
		for _, e := range v {
			b = appendValue(b, e)
		}
		return append(b, 'e')
	case []string:
		b = append(b, 'l')
		for _, e := range v {
			b = appendValue(b, e)
		}
		return append(b, 'e')
	case dict:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b = appendValue(b, k)
			b = appendValue(b, v[k])
		}
		return append(b, 'e')
	}
	panic(fmt.Sprintf("conformance: cannot bencode %T", v))
}

// value is one decoded bencode value.
type value struct {
	kind byte             // 'i', 's', 'l' or 'd'
	i    int64            // kind 'i'
	s    string           // kind 's'
	l    []value          // kind 'l'
	d    map[string]value // kind 'd'
	raw  []byte           // the exact bytes of the value
}

// errBencode wraps every decode failure.
var errBencode = errors.New("not bencode")

const maxDepth = 32

// decode parses b as exactly one bencoded value, canonical or not (keys in
// any order, integers and lengths with leading zeros).
func decode(b []byte) (value, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return value{}, err
	}
	if d.i != len(b) {
		return value{}, fmt.Errorf("%w: %d trailing bytes", errBencode, len(b)-d.i)
	}
	return v, nil
}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) value(depth int) (value, error) {
	if depth > maxDepth {
		return value{}, fmt.Errorf("%w: nested deeper than %d", errBencode, maxDepth)
	}
	if d.i >= len(d.b) {
		return value{}, fmt.Errorf("%w: truncated", errBencode)
	}
	start := d.i
	switch c := d.b[d.i]; {
	case c == 'i':
		end := d.i + 1
		for end < len(d.b) && d.b[end] != 'e' {
			end++
		}
		if end >= len(d.b) {
			return value{}, fmt.Errorf("%w: truncated integer", errBencode)
		}
		digits := string(d.b[d.i+1 : end])
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return value{}, fmt.Errorf("%w: integer %q", errBencode, digits)
		}
		d.i = end + 1
		return value{kind: 'i', i: n, raw: d.b[start:d.i]}, nil
	case c >= '0' && c <= '9':
		colon := d.i
		for colon < len(d.b) && d.b[colon] != ':' {
			colon++
		}
		if colon >= len(d.b) || colon-d.i > 8 {
			return value{}, fmt.Errorf("%w: bad string length", errBencode)
		}
		digits := string(d.b[d.i:colon])
		n, err := strconv.Atoi(digits)
		if err != nil || n > len(d.b)-colon-1 {
			return value{}, fmt.Errorf("%w: string length %q", errBencode, digits)
		}
		d.i = colon + 1 + n
		return value{kind: 's', s: string(d.b[colon+1 : d.i]), raw: d.b[start:d.i]}, nil
	case c == 'l':
		d.i++
		v := value{kind: 'l'}
		for {
			if d.i >= len(d.b) {
				return value{}, fmt.Errorf("%w: truncated list", errBencode)
			}
			if d.b[d.i] == 'e' {
				d.i++
				v.raw = d.b[start:d.i]
				return v, nil
			}
			e, err := d.value(depth + 1)
			if err != nil {
				return value{}, err
			}
			v.l = append(v.l, e)
		}
	case c == 'd':
		d.i++
		v := value{kind: 'd', d: map[string]value{}}
		for {
			if d.i >= len(d.b) {
				return value{}, fmt.Errorf("%w: truncated dict", errBencode)
			}
			if d.b[d.i] == 'e' {
				d.i++
				v.raw = d.b[start:d.i]
				return v, nil
			}
			k, err := d.value(depth + 1)
			if err != nil {
				return value{}, err
			}
			if k.kind != 's' {
				return value{}, fmt.Errorf("%w: dict key is not a string", errBencode)
			}
			e, err := d.value(depth + 1)
			if err != nil {
				return value{}, err
			}
			v.d[k.s] = e
		}
	default:
		return value{}, fmt.Errorf("%w: unexpected byte %q", errBencode, c)
	}
}

// str returns d[key] if it is a string.
func (v value) str(key string) (string, bool) {
	e, ok := v.d[key]
	if !ok || e.kind != 's' {
		return "", false
	}
	return e.s, true
}

// integer returns d[key] if it is an integer.
func (v value) integer(key string) (int64, bool) {
	e, ok := v.d[key]
	if !ok || e.kind != 'i' {
		return 0, false
	}
	return e.i, true
}

// has reports whether the dict v has key.
func (v value) has(key string) bool {
	_, ok := v.d[key]
	return ok
}
