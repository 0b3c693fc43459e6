package pkarr

import (
	"crypto/ed25519"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/storage"
)

const testOrigin = "o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyy"

func TestRecordsRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		want Record // after encode and decode
	}{
		{"@ A 192.0.2.1", Record{testOrigin + ".", "A", 300, "192.0.2.1"}},
		{"www AAAA 2001:db8::1 60", Record{"www." + testOrigin + ".", "AAAA", 60, "2001:db8::1"}},
		{`_hi TXT "hello pkarr world" 30`, Record{"_hi." + testOrigin + ".", "TXT", 30, `"hello pkarr world"`}},
		{"_t TXT one", Record{"_t." + testOrigin + ".", "TXT", 300, `"one"`}},
		{"alias CNAME example.com", Record{"alias." + testOrigin + ".", "CNAME", 300, "example.com."}},
		{"@ HTTPS 1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1,192.0.2.2 3600", Record{testOrigin + ".", "HTTPS", 3600, "1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1,192.0.2.2"}},
		{"_x SVCB 2 relay.example ipv6hint=2001:db8::2 port=1 no-default-alpn alpn=h3", Record{"_x." + testOrigin + ".", "SVCB", 300, "2 relay.example. alpn=h3 no-default-alpn port=1 ipv6hint=2001:db8::2"}},
		{"sub." + testOrigin + " a 198.51.100.7 1", Record{"sub." + testOrigin + ".", "A", 1, "198.51.100.7"}},
	}
	var recs []Record
	for _, tt := range tests {
		r, err := ParseRecord(tt.in)
		if err != nil {
			t.Fatalf("ParseRecord(%q): %v", tt.in, err)
		}
		recs = append(recs, r)
	}
	packet, err := EncodePacket(testOrigin, recs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePacket(packet)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(tests) {
		t.Fatalf("decoded %d records, want %d", len(got), len(tests))
	}
	for i, tt := range tests {
		if got[i] != tt.want {
			t.Errorf("%q: got %+v, want %+v", tt.in, got[i], tt.want)
		}
		if !strings.Contains(got[i].String(), "\tIN\t"+tt.want.Type+"\t") {
			t.Errorf("String() = %q: not dig-like", got[i].String())
		}
	}
}

func TestParseRecordBad(t *testing.T) {
	for _, s := range []string{
		"@ A", "@ A 1.2.3", "@ A 2001:db8::1", "@ AAAA 1.2.3.4", "@ MX 10 mail", "@ A 1.2.3.4 x",
		"@ A 1.2.3.4 300 9", "@ TXT two words", `@ TXT "open`, "@ HTTPS 1", "@ HTTPS x .",
		"@ HTTPS 1 . alpn=", "@ HTTPS 1 . port=99999", "@ HTTPS 1 . foo=bar", "@ HTTPS 1 . port=1 port=2",
		"@ SVCB 1 . ipv4hint=2001:db8::1", "@ SVCB 1 . no-default-alpn=x",
		`" " SVCB 0 0`, `"" A 1.2.3.4`, "a..b A 1.2.3.4",
	} {
		if r, err := ParseRecord(s); !errors.Is(err, ErrRecord) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want ErrRecord", s, r, err)
		}
	}
}

func TestSignedPacket(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := priv.Public().(ed25519.PublicKey)
	seq := SeqAt(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC))
	p, err := Sign(priv, []byte("packet"), seq)
	if err != nil {
		t.Fatal(err)
	}
	body := p.Body()
	if len(body) != HeaderLen+6 {
		t.Fatalf("body %d bytes", len(body))
	}
	// the BEP 44 signature buffer, written out.
	if !ed25519.Verify(pub, []byte("3:seqi"+itoa(seq)+"e1:v6:packet"), body[:64]) {
		t.Fatal("signature is not over 3:seqi<seq>e1:v<len>:<packet>")
	}
	back, err := ParseBody(pub, body)
	if err != nil || back.Seq != seq || string(back.Packet) != "packet" || !back.Time().Equal(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)) {
		t.Fatalf("ParseBody: %+v, %v", back, err)
	}
	it := p.Item()
	if !storage.VerifyMutable(it.K, nil, it.Seq, it.V, it.Sig) {
		t.Fatal("Item does not verify as a BEP 44 item")
	}
	if fi, err := FromItem(it); err != nil || string(fi.Packet) != "packet" {
		t.Fatalf("FromItem: %+v %v", fi, err)
	}

	bad := append([]byte(nil), body...)
	bad[70] ^= 1 // seq
	tooBig := append(append([]byte(nil), body[:HeaderLen]...), make([]byte, MaxPacketLen+1)...)
	dhtTooBig := append(append([]byte(nil), body[:HeaderLen]...), make([]byte, 997)...)
	hiSeq := append([]byte(nil), body...)
	hiSeq[64] = 0x80
	for _, tt := range []struct {
		name string
		body []byte
		want error
	}{
		{"short", body[:71], ErrMalformed},
		{"seq flipped", bad, ErrBadSignature},
		{"seq over int64", hiSeq, ErrMalformed},
		{"over 1000-byte packet", tooBig, ErrTooLarge},
		{"over BEP 44 value", dhtTooBig, ErrTooLarge},
	} {
		if _, err := ParseBody(pub, tt.body); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := ParseKey(EncodeZBase32(pub)); err != nil {
		t.Error(err)
	}
	if k, err := ParseKey("pk:" + testOrigin); err != nil || EncodeZBase32(k) != testOrigin {
		t.Error(k, err)
	}
	for _, s := range []string{"", "abc", testOrigin[:51], strings.Repeat("zz", 32), "yy"} {
		if _, err := ParseKey(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q): %v", s, err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
