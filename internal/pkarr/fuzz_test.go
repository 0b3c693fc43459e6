package pkarr

import (
	"crypto/ed25519"
	"testing"
)

// FuzzParseRecord: a record ParseRecord accepts encodes into a packet that
// decodes to one record, which prints as text ParseRecord reads back to
// the same record.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"@ A 192.0.2.1", "www AAAA 2001:db8::1 60", `_t TXT "a b" 5`, "x CNAME example.com",
		"@ HTTPS 1 . alpn=h2,h3 port=443 ipv4hint=192.0.2.1", "_s SVCB 0 target.example mandatory=alpn alpn=h3 no-default-alpn",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			return
		}
		packet, err := EncodePacket(testOrigin, []Record{r})
		if err != nil {
			return // a name or value the DNS format cannot hold
		}
		got, err := DecodePacket(packet)
		if err != nil || len(got) != 1 {
			t.Fatalf("%q: encoded packet decodes to %v, %v", s, got, err)
		}
		back, err := ParseRecord(got[0].Name + " " + got[0].Type + " " + got[0].Value + " " + itoa(int64(got[0].TTL)))
		if err != nil {
			t.Fatalf("%q: printed as %q, which does not parse: %v", s, got[0], err)
		}
		again, err := EncodePacket(testOrigin, []Record{back})
		if err != nil || string(again) != string(packet) {
			t.Fatalf("%q: reparsed %+v encodes differently (%v)", s, back, err)
		}
	})
}

// FuzzDecodePacket: any bytes decode to records or an error; a signed
// body of them round-trips through ParseBody.
func FuzzDecodePacket(f *testing.F) {
	r, _ := ParseRecord("@ HTTPS 1 . alpn=h2 port=443")
	p, _ := EncodePacket(testOrigin, []Record{r})
	f.Add(p)
	f.Add([]byte{})
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodePacket(b)
		sp, err := Sign(priv, b, 1)
		if err != nil {
			if len(b) <= MaxPacketLen-4 {
				t.Fatalf("Sign %d bytes: %v", len(b), err)
			}
			return
		}
		back, err := ParseBody(sp.PublicKey, sp.Body())
		if err != nil || string(back.Packet) != string(b) {
			t.Fatalf("ParseBody(Body()) = %v", err)
		}
	})
}
