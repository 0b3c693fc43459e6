package krpc

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

// scannerCases are inputs to CheckCanonical with Limits{} and the verdict
// BEP 3 gives them.
var scannerCases = []struct {
	in string
	ok bool
}{
	{"0:", true},
	{"12:Hello World!", true},
	{"i0e", true},
	{"i-1e", true},
	{"i42e", true},
	{"i9223372036854775807e", true},
	{"i-9223372036854775808e", true},
	{"i123456789012345678901234567890e", true}, // any size without Int64
	{"le", true},
	{"de", true},
	{"l5:helloi42ee", true},
	{"d1:a1:b1:ni1ee", true},
	{"d1:ad1:bl0:i0eee1:clee", true},
	{"d0:i1e1:ai2ee", true},  // the empty key sorts first
	{"d1:a0:2:aai0ee", true}, // "a" < "aa"
	{"d1:\x7f0:1:\x800:e", true},
	{"llllleeeee", true},
	{strings.Repeat("l", 64) + strings.Repeat("e", 64), true},
	{strings.Repeat("l", 65) + strings.Repeat("e", 65), true}, // past anacrolix's limit only
	{strings.Repeat("l", 500) + strings.Repeat("e", 500), true},

	{"", false},
	{"e", false},
	{"x", false},
	{"i", false},
	{"ie", false},
	{"i-e", false},
	{"i-0e", false},
	{"i01e", false},
	{"i-01e", false},
	{"i00e", false},
	{"i1", false},
	{"i1.5e", false},
	{"i+1e", false},
	{"i 1e", false},
	{"01:a", false},
	{"00:", false},
	{"-1:", false},
	{"1:", false},
	{"5:abc", false},
	{"1a", false},
	{":", false},
	{"99999999999999999999999:x", false},
	{"l", false},
	{"li1e", false},
	{"d", false},
	{"d1:ae", false},        // key without value
	{"di1ei2ee", false},     // integer key
	{"dlei1ee", false},      // list key
	{"d1:b0:1:a0:e", false}, // unsorted
	{"d1:a0:1:a0:e", false}, // repeated
	{"d2:aa0:1:a0:e", false},
	{"d1:\x800:1:\x7f0:e", false}, // raw-byte order, not signed
	{"i1ei2e", false},             // two values
	{"0:0:", false},
	{"lee", false},
	{"12:Hello World!x", false},
	{strings.Repeat("l", 500) + strings.Repeat("e", 499), false},
	{strings.Repeat("l", maxNesting+1) + strings.Repeat("e", maxNesting+1), false},
}

func TestScanner(t *testing.T) {
	for _, tt := range scannerCases {
		name := tt.in
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		t.Run(name, func(t *testing.T) {
			err := CheckCanonical([]byte(tt.in), Limits{})
			if (err == nil) != tt.ok {
				t.Fatalf("CheckCanonical(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrNotCanonical) {
				t.Errorf("error %v does not wrap ErrNotCanonical", err)
			}
			if !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q does not say where", err)
			}
		})
	}
}

func TestScannerLimits(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("l", n) + strings.Repeat("e", n) }
	many := func(n int) string { return "l" + strings.Repeat("i1e", n-1) + "e" } // n values
	tests := []struct {
		name string
		in   string
		lim  Limits
		ok   bool
		msg  string // part of the error
	}{
		{"depth at the bound", deep(3), Limits{MaxDepth: 3}, true, ""},
		{"depth past the bound", deep(4), Limits{MaxDepth: 3}, false, "nested deeper than 3"},
		{"dict depth", "d1:ad1:bd1:cleeee", Limits{MaxDepth: 3}, false, "nested deeper than 3"},
		{"tokens at the bound", many(10), Limits{MaxTokens: 10}, true, ""},
		{"tokens past the bound", many(11), Limits{MaxTokens: 10}, false, "more than 10 values"},
		{"keys are not tokens", "d1:ai1e1:bi2ee", Limits{MaxTokens: 3}, true, ""},
		{"int64 max", "i9223372036854775807e", Limits{Int64: true}, true, ""},
		{"int64 min", "i-9223372036854775808e", Limits{Int64: true}, true, ""},
		{"int64 max+1", "i9223372036854775808e", Limits{Int64: true}, false, "integer at offset 0"},
		{"int64 min-1", "i-9223372036854775809e", Limits{Int64: true}, false, "integer at offset 0"},
		{"20 digits", "li10000000000000000000ee", Limits{Int64: true}, false, "integer at offset 1"},
		{"packet limits", deep(maxDepth + 1), packetLimits, false, "nested deeper than 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCanonical([]byte(tt.in), tt.lim)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckCanonical(%q, %+v) = %v, want ok=%v", tt.in, tt.lim, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrNotCanonical) || !strings.Contains(err.Error(), tt.msg)) {
				t.Errorf("error %q: want ErrNotCanonical and %q", err, tt.msg)
			}
		})
	}
}

func TestScannerErrorOffset(t *testing.T) {
	tests := []struct{ in, want string }{
		{"d1:b0:1:a0:e", `dict key "a" at offset 6 unsorted or repeated`},
		{"l1:ai01ee", "integer at offset 4"},
		{"l1:a02:abe", "byte string at offset 4"},
		{"i1ei2e", "3 trailing bytes at offset 3"},
		{"l1:ax", `unexpected byte 'x' at offset 4`},
		{"d1:ai1e", "truncated dict at offset 7"},
	}
	for _, tt := range tests {
		err := CheckCanonical([]byte(tt.in), Limits{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckCanonical(%q) = %v, want an error saying %q", tt.in, err, tt.want)
		}
	}
}

func TestParseString(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0:", "", true},
		{"5:hello", "hello", true},
		{"3:a:b", "a:b", true},
		{"5:hell", "", false},
		{"5:hello!", "", false},
		{"05:hello", "", false},
		{"+5:hello", "", false},
		{"i5e", "", false},
		{"hello", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := ParseString([]byte(tt.in))
		if (err == nil) != tt.ok || string(got) != tt.want {
			t.Errorf("ParseString(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrNotCanonical) {
			t.Errorf("ParseString(%q): error %v does not wrap ErrNotCanonical", tt.in, err)
		}
	}
}

func TestAppendStringMatchesAnacrolix(t *testing.T) {
	for _, s := range []string{"", "a", "hello world", strings.Repeat("x", 1000), "\x00\xff"} {
		want, err := bencode.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %q, want %q", s, got, want)
		}
		if got := AppendString([]byte("x"), []byte(s)); !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Errorf("AppendString(x, []byte(%q)) = %q, want x%q", s, got, want)
		}
		if back, err := ParseString(want); err != nil || string(back) != s {
			t.Errorf("ParseString(%q) = %q, %v", want, back, err)
		}
	}
}

func TestReadInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"i0e", 0, true},
		{"i-42e", -42, true},
		{"i9223372036854775807e", 9223372036854775807, true},
		{"i-9223372036854775808e", -9223372036854775808, true},
		{"i9223372036854775808e", 0, false},
		{"i-0e", 0, false},
		{"i01e", 0, false},
		{"ie", 0, false},
		{"1:a", 0, false},
	}
	for _, tt := range tests {
		got, rest, err := readInt([]byte(tt.in + "xy"))
		if (err == nil) != tt.ok || got != tt.want || (tt.ok && string(rest) != "xy") {
			t.Errorf("readInt(%q) = %d, %q, %v; want %d, ok=%v", tt.in+"xy", got, rest, err, tt.want, tt.ok)
		}
	}
}

// checkScannerAgainstAnacrolix asserts, for any b, that CheckCanonical
// accepts b exactly when anacrolix's bencode decodes it and encodes the
// result back to the same bytes (a canonical value is the one encoding of
// what it decodes to), that the lax walk accepts whatever the strict one
// does, and that skipValue agrees on the length of what CheckCanonical
// accepted.
func checkScannerAgainstAnacrolix(t *testing.T, b []byte) {
	lim := Limits{MaxDepth: 64} // anacrolix's nesting limit; it decodes big integers too
	err := CheckCanonical(b, lim)
	if err != nil && !errors.Is(err, ErrNotCanonical) {
		t.Fatalf("CheckCanonical(%q): error %v does not wrap ErrNotCanonical", b, err)
	}
	var v any
	roundTrip := false
	if bencode.Unmarshal(b, &v) == nil {
		out, merr := bencode.Marshal(v)
		roundTrip = merr == nil && bytes.Equal(out, b)
	}
	if (err == nil) != roundTrip {
		t.Fatalf("CheckCanonical(%q) = %v, but anacrolix round trip identical = %v", b, err, roundTrip)
	}
	if err != nil {
		return
	}
	if n, lerr := scan(b, lim, true); lerr != nil || n != len(b) {
		t.Fatalf("lax scan of canonical %q = %d, %v", b, n, lerr)
	}
	if n, serr := skipValue(b); serr != nil || n != len(b) {
		t.Fatalf("skipValue(%q) = %d, %v; want %d", b, n, serr, len(b))
	}
}

func TestScannerMatchesAnacrolix(t *testing.T) {
	for _, tt := range scannerCases {
		checkScannerAgainstAnacrolix(t, []byte(tt.in))
	}
	for _, c := range benchMessages() {
		pkt, err := Encode(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		checkScannerAgainstAnacrolix(t, pkt)
	}
}

// FuzzScanner fuzzes checkScannerAgainstAnacrolix, seeded with the
// packet vectors, the decoder's corpus, testdata/fuzz/FuzzScanner
// and the table above.
func FuzzScanner(f *testing.F) {
	addCorpus(f, "FuzzDecode")
	addCorpus(f, "FuzzScanner")
	for _, tt := range scannerCases {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(checkScannerAgainstAnacrolix)
}
