package krpc

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addCorpus seeds f with every packet vector and every file under
// ../testdata/fuzz/<name>/ (packets that once broke something live there).
func addCorpus(f *testing.F, name string) {
	for _, v := range loadPacketVectors(f) {
		pkt, err := hex.DecodeString(v.Hex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pkt)
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "fuzz", name, "*"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecode: no input makes Decode panic; whatever decodes re-encodes,
// and the re-encoding is a fixed point of decode+encode.
func FuzzDecode(f *testing.F) {
	addCorpus(f, "FuzzDecode")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var m Msg
		err := Decode(pkt, &m)
		var be *BodyError
		if err != nil && !errors.Is(err, ErrDrop) && !errors.As(err, &be) {
			t.Fatalf("error neither ErrDrop nor BodyError: %v", err)
		}
		if err != nil {
			return
		}
		out, err := Encode(&m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v\n%q", err, pkt)
		}
		var m2 Msg
		if err := Decode(out, &m2); err != nil {
			t.Fatalf("re-encoding does not decode: %v\n in %q\nout %q", err, pkt, out)
		}
		out2, err := Encode(&m2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encode not stable: %v\n%q\n%q", err, out, out2)
		}
	})
}
