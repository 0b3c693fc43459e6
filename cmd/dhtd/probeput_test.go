package main

// `dhtd probe put` against a running `dhtd run` node: every BEP 44 put error
// code the node answers (203, 205, 206, 207, 301, 302) is provoked on
// purpose, and the node's stored item must be unchanged after each.

import (
	"crypto/ed25519"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// probeItemJSON is the part of a probe's --json object that a BEP 44 get or
// put answer fills in.
type probeItemJSON struct {
	ID        string     `json:"id"`
	Token     string     `json:"token"`
	V         string     `json:"v"` // hex
	VBencoded string     `json:"-"` // V decoded
	K         string     `json:"k"`
	Seq       *int64     `json:"seq"`
	Sig       string     `json:"sig"`
	Error     *jsonError `json:"error"`
}

func parseProbeItem(t *testing.T, r cmdResult) probeItemJSON {
	t.Helper()
	out := strings.TrimSpace(r.stdout)
	var p probeItemJSON
	if strings.Count(out, "\n") != 0 {
		t.Fatalf("--json: want one line, got:\n%s", r.stdout)
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, r.stdout)
	}
	v, err := hex.DecodeString(p.V)
	if err != nil {
		t.Fatalf("--json: v %q is not hex", p.V)
	}
	p.VBencoded = string(v)
	return p
}

// keygen runs `dhtd keygen` into a temporary file and returns the file and
// the printed public key (checked to be the file's key).
func keygen(t *testing.T) (string, ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "key")
	r := runDhtd(t, "keygen", file, "--json")
	if r.code != 0 {
		t.Fatalf("dhtd keygen: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		KeyFile   string `json:"key_file"`
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("dhtd keygen --json: %v\n%s", err, r.stdout)
	}
	pub, err := hex.DecodeString(out.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("dhtd keygen: public key %q", out.PublicKey)
	}
	priv, err := readKey(file)
	if err != nil {
		t.Fatalf("reading the key file written by keygen: %v", err)
	}
	if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(pub)) {
		t.Fatalf("dhtd keygen printed public key %x, the file holds the key of %x", pub, priv.Public())
	}
	return file, pub, priv
}

// mutableTarget is SHA-1(k + salt) (BEP 44), computed here rather than by
// the code under test.
func mutableTarget(pub []byte, salt string) string {
	h := sha1.Sum(append(append([]byte(nil), pub...), salt...))
	return hex.EncodeToString(h[:])
}

// bep44SignBuffer is what a mutable item's signature covers (BEP 44),
// built here by hand.
func bep44SignBuffer(salt string, seq int64, v string) []byte {
	var b strings.Builder
	if salt != "" {
		fmt.Fprintf(&b, "4:salt%d:%s", len(salt), salt)
	}
	fmt.Fprintf(&b, "3:seqi%de1:v%s", seq, v)
	return []byte(b.String())
}

var reProbeError = regexp.MustCompile(`(?m)^dhtd: node (\S+) answered error (\d+): `)

func TestProbePutErrorCodes(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	n := startNode(t, "--no-bootstrap")
	keyFile, pub, _ := keygen(t)
	target := mutableTarget(pub, "")

	// probeGet sends `dhtd probe get` for target and returns the answer.
	probeGet := func(t *testing.T, target string) probeItemJSON {
		t.Helper()
		r := runDhtd(t, "probe", "get", "--json", "--bind", "127.0.0.1:0", n.Addr, target)
		if r.code != 0 {
			t.Fatalf("probe get %s: exit %d\nstdout:\n%s\nstderr:\n%s", target, r.code, r.stdout, r.stderr)
		}
		p := parseProbeItem(t, r)
		if p.ID != n.ID || p.Token == "" {
			t.Fatalf("probe get %s: id %q token %q; want the node's id %s and a token", target, p.ID, p.Token, n.ID)
		}
		return p
	}
	put := func(t *testing.T, jsonOut bool, args ...string) cmdResult {
		t.Helper()
		a := []string{"probe", "put", "--bind", "127.0.0.1:0"}
		if jsonOut {
			a = append(a, "--json")
		}
		return runDhtd(t, append(append(a, n.Addr), args...)...)
	}
	token := probeGet(t, target).Token // tokens are bound to 127.0.0.1 and the target

	// The item every case tries to disturb: seq 5, no salt.
	const origSeq = 5
	const origVal = "original value"
	r := put(t, true, origVal, "--token", token, "--key", keyFile, "--seq", strconv.Itoa(origSeq))
	if r.code != 0 {
		t.Fatalf("storing the original item: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	orig := probeGet(t, target)
	origV := fmt.Sprintf("%d:%s", len(origVal), origVal)
	if orig.VBencoded != origV || orig.Seq == nil || *orig.Seq != origSeq || orig.K != hex.EncodeToString(pub) {
		t.Fatalf("stored item: v %q seq %v k %s; want %q seq %d k %x", orig.VBencoded, orig.Seq, orig.K, origV, origSeq, pub)
	}
	origSig, err := hex.DecodeString(orig.Sig)
	if err != nil || !ed25519.Verify(pub, bep44SignBuffer("", origSeq, origV), origSig) {
		t.Fatalf("stored item: sig %q does not verify over seq %d and v %q", orig.Sig, origSeq, origV)
	}

	longSalt := strings.Repeat("s", 65)
	otherToken := probeGet(t, mutableTarget(pub, "another salt")).Token
	saltToken := probeGet(t, mutableTarget(pub, longSalt)).Token
	// A valid signature, but over seq 5 and the original v: wrong for the
	// seq 6 and new v it is sent with.
	staleSig := orig.Sig
	mutable := func(v string, seq int, extra ...string) []string {
		return append([]string{v, "--key", keyFile, "--seq", strconv.Itoa(seq)}, extra...)
	}

	cases := []struct {
		name  string
		token string // "" means the token for the target
		args  []string
		code  int64 // 0: the node drops the packet and never answers
	}{
		{"203 token of no kind", "00112233", mutable("new value", 6), 203},
		{"203 token for another target", otherToken, mutable("new value", 6), 203},
		{"203 v missing", "", mutable("", 6, "--bencoded"), 203},
		{"203 sig not 64 bytes", "", mutable("new value", 6, "--sig", "abcd"), 203},
		{"203 negative seq", "", mutable("new value", -1), 203},
		{"205 v of 1001 bytes", "", mutable(strings.Repeat("x", 997), 6), 205},
		{"205 v of 1005 bytes, bad token too", "00112233", mutable(strings.Repeat("x", 1000), 6), 205},
		{"206 stale signature", "", mutable("new value", 6, "--sig", staleSig), 206},
		{"206 signature over another seq", "", mutable(origVal, 6, "--sig", staleSig), 206},
		{"206 all-zero signature", "", mutable("new value", 6, "--sig", strings.Repeat("00", 64)), 206},
		{"207 salt of 65 bytes", saltToken, mutable("new value", 6, "--salt", longSalt), 207},
		{"301 cas below the stored seq", "", mutable("new value", 6, "--cas", "4"), 301},
		{"301 cas above the stored seq", "", mutable("new value", 7, "--cas", "6"), 301},
		{"302 lower seq", "", mutable("new value", origSeq-1), 302},
		{"302 seq 0", "", mutable("new value", 0), 302},
		{"302 equal seq, another v", "", mutable("another value", origSeq), 302},
		// A v that is well-formed but not canonical (dict keys out of
		// order) is refused 203 (BEP 44) by krpc.Decode before any handler
		// sees it. A v that is not bencode at all (BEP 3 forbids leading
		// zeros; a string longer than its bytes) makes the packet invalid:
		// it is dropped unanswered, as every undecodable packet.
		{"203 v dict with unsorted keys", "", mutable("d1:bi1e1:ai2ee", 6, "--bencoded"), 203},
		{"dropped: v integer with leading zero", "", mutable("i01e", 6, "--bencoded"), 0},
		{"dropped: v string longer than its bytes", "", mutable("9:abc", 6, "--bencoded"), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token
			if tok == "" {
				tok = token
			}
			args := append(append([]string(nil), c.args...), "--token", tok)

			if c.code == 0 {
				// No answer: the probe times out (bounded by --timeout).
				args = append(args, "--timeout", "300ms")
			}
			want := fmt.Sprintf("error %d", c.code)
			if c.code == 0 {
				want = "no answer"
			}

			// --json: exit status and error_code.
			r := put(t, true, args...)
			if r.code == 0 {
				t.Fatalf("probe put --json %q: exit 0, want %s\n%s", c.args, want, r.stdout)
			}
			p := parseProbeItem(t, r)
			if p.Error == nil || p.Error.Code != c.code || (c.code == 0 && !strings.Contains(p.Error.Message, "timed out")) {
				t.Errorf("probe put --json %q: error %+v; want %s", c.args, p.Error, want)
			}
			// Plain: the same code in the error line.
			r = put(t, false, args...)
			if r.code == 0 {
				t.Fatalf("probe put %q: exit 0, want %s\n%s", c.args, want, r.stdout)
			}
			if c.code == 0 {
				if !strings.Contains(r.stderr, "timed out") || r.code != exitTimeout {
					t.Errorf("probe put %q: exit %d, stderr does not say timed out:\n%s", c.args, r.code, r.stderr)
				}
			} else if m := reProbeError.FindStringSubmatch(r.stderr); m == nil || m[1] != n.Addr || m[2] != strconv.FormatInt(c.code, 10) || r.code != exitRefused {
				t.Errorf("probe put %q: exit %d, no line \"dhtd: node %s answered error %d: ...\" in:\n%s", c.args, r.code, n.Addr, c.code, r.stderr)
			}

			// The stored item is unchanged.
			got := probeGet(t, target)
			if got.VBencoded != orig.VBencoded || got.Seq == nil || *got.Seq != *orig.Seq || got.Sig != orig.Sig || got.K != orig.K {
				t.Errorf("after the rejected put the node returns v %q seq %v sig %s k %s; want v %q seq %d sig %s k %s unchanged",
					got.VBencoded, got.Seq, got.Sig, got.K, orig.VBencoded, *orig.Seq, orig.Sig, orig.K)
			}
		})
	}

	// Nothing was stored under the over-long salt either.
	if p := probeGet(t, mutableTarget(pub, longSalt)); p.VBencoded != "" || p.Seq != nil {
		t.Errorf("the put with a 65-byte salt stored v %q seq %v", p.VBencoded, p.Seq)
	}

	// Control: the same token, key and node accept a valid put (seq 6, cas
	// 5), so the rejections above were the faults' doing.
	r = put(t, true, mutable("new value", origSeq+1, "--cas", strconv.Itoa(origSeq), "--token", token)...)
	if r.code != 0 {
		t.Fatalf("valid put after the rejected ones: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got := probeGet(t, target); got.VBencoded != "9:new value" || got.Seq == nil || *got.Seq != origSeq+1 {
		t.Fatalf("after the valid put: v %q seq %v, want \"9:new value\" seq %d", got.VBencoded, got.Seq, origSeq+1)
	}
}
