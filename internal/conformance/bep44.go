package conformance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/dhtd/dhtd/krpc"
)

// signBuffer is what a BEP 44 signature covers (BEP 44, Signature
// Verification): ["4:salt" len ":" salt] "3:seqi" seq "e1:v" v, built by
// concatenation.
func signBuffer(salt []byte, seq int64, v []byte) []byte {
	var b []byte
	if len(salt) > 0 {
		b = append(b, "4:salt"...)
		b = strconv.AppendInt(b, int64(len(salt)), 10)
		b = append(append(b, ':'), salt...)
	}
	b = append(b, "3:seqi"...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "e1:v"...)
	return append(b, v...)
}

// mutableTarget is SHA-1(k ‖ salt) (BEP 44, Mutable Items).
func mutableTarget(k, salt []byte) krpc.ID {
	return krpc.ID(sha1.Sum(append(append([]byte(nil), k...), salt...)))
}

// The published BEP 44 test vectors 1 and 2 (BEP 44, Test vectors): the
// key was expanded by the BEP's authors, so only these signatures exist.
const (
	vectorKey     = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548"
	vectorSig1    = "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
	vectorSig2    = "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
	vectorTarget1 = "4a533d47ec9c7d95b1ad75f576cffc641853b750"
	vectorTarget2 = "411eba73b6f087ca51a3795d9c8c938d365e32c1"
	vectorV       = "12:Hello World!"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// item is what a get returned.
type item struct {
	r     *reply
	rd    value
	v     []byte
	k     string
	sig   string
	seq   int64
	hasSq bool
}

// get reads target from s.
func (e *env) get(s *sock, target krpc.ID, extra dict) (item, error) {
	a := dict{"target": target[:]}
	for k, v := range extra {
		a[k] = v
	}
	r, err := e.ask(s, "get", a)
	if err != nil {
		return item{}, err
	}
	it := item{r: r}
	it.rd, _ = r.r()
	if v, ok := it.rd.d["v"]; ok {
		it.v = v.raw
	}
	it.k, _ = it.rd.str("k")
	it.sig, _ = it.rd.str("sig")
	it.seq, it.hasSq = it.rd.integer("seq")
	return it, nil
}

// mput is a mutable put.
type mput struct {
	k, salt []byte
	priv    ed25519.PrivateKey
	seq     int64
	v       []byte
	cas     *int64
	sig     []byte // overrides the signature
	target  *krpc.ID
}

// put sends a mutable put from s, with a token from a get for its target.
func (e *env) put(s *sock, p mput) (*reply, error) {
	target := mutableTarget(p.k, p.salt)
	if p.target != nil {
		target = *p.target
	}
	tok, err := e.getToken(s, target)
	if err != nil {
		return nil, err
	}
	sig := p.sig
	if sig == nil {
		sig = ed25519.Sign(p.priv, signBuffer(p.salt, p.seq, p.v))
	}
	a := dict{"token": tok, "k": p.k, "seq": p.seq, "sig": sig, "v": raw(p.v)}
	if len(p.salt) > 0 {
		a["salt"] = p.salt
	}
	if p.cas != nil {
		a["cas"] = *p.cas
	}
	return e.ask(s, "put", a)
}

// putImmutable sends an immutable put of v from s, with extra arguments.
func (e *env) putImmutable(s *sock, v []byte, extra dict) (*reply, error) {
	tok, err := e.getToken(s, krpc.ID(sha1.Sum(v)))
	if err != nil {
		return nil, err
	}
	a := dict{"token": tok, "v": raw(v)}
	for k, x := range extra {
		a[k] = x
	}
	return e.ask(s, "put", a)
}

func i64(v int64) *int64 { return &v }

func str(v string) []byte { return encode(v) }

// runBEP44 checks get and put (BEP 44).
func runBEP44(e *env) {
	s, err := e.sock(3)
	if err != nil {
		e.skip(cGetToken, "%v", err)
		return
	}
	rid := randomID()
	nonce := hex.EncodeToString(rid[:8])

	// get: token and nodes.
	if it, err := e.get(s, randomID(), nil); err != nil {
		e.broken(cGetToken, "get", err)
		e.broken(cGetNodes, "get", err)
	} else {
		if tok, ok := it.rd.str("token"); ok && tok != "" {
			e.pass(cGetToken, "%d-byte token", len(tok))
		} else {
			e.fail(cGetToken, "get answered with %s and no token", it.r.describe())
		}
		if it.rd.has(e.nodesKey()) {
			e.pass(cGetNodes, "%s present", e.nodesKey())
		} else {
			e.fail(cGetNodes, "get answered with %s and no %s", it.r.describe(), e.nodesKey())
		}
	}

	stored := func(c *Check, r *reply, err error, target krpc.ID, want []byte, what string) {
		switch {
		case err != nil:
			e.broken(c, "put", err)
		case r.y() != "r":
			e.fail(c, "%s refused: %s", what, r.describe())
		default:
			it, err := e.get(e.main, target, nil)
			switch {
			case err != nil:
				e.broken(c, "get", err)
			case bytes.Equal(it.v, want):
				e.pass(c, "%s stored and returned byte for byte", what)
			case it.v == nil:
				e.fail(c, "%s accepted, but get returns no v", what)
			default:
				e.fail(c, "%s accepted, but get returns %q", what, it.v)
			}
		}
	}

	// Immutable round trip with a dict value.
	v := []byte("d5:nonce" + strconv.Itoa(len(nonce)) + ":" + nonce + "4:text11:conformancee")
	r, err := e.putImmutable(s, v, nil)
	stored(cImmutable, r, err, krpc.ID(sha1.Sum(v)), v, "a dict value")

	// A non-canonical v: keys out of order.
	nc := []byte("d4:texti1e5:nonce" + strconv.Itoa(len(nonce)) + ":" + nonce + "e")
	canon := []byte("d5:nonce" + strconv.Itoa(len(nonce)) + ":" + nonce + "4:texti1ee")
	if r, err := e.putImmutable(s, nc, nil); err != nil {
		e.broken(cNonCanonical, "put", err)
	} else if code, _ := r.errCode(); code == 203 {
		e.pass(cNonCanonical, "refused: %s", r.describe())
	} else if r.y() != "r" {
		e.fail(cNonCanonical, "answered with %s (neither stored nor 203)", r.describe())
	} else if a, err := e.get(e.main, krpc.ID(sha1.Sum(nc)), nil); err != nil {
		e.broken(cNonCanonical, "get", err)
	} else if b, err := e.get(e.main, krpc.ID(sha1.Sum(canon)), nil); err != nil {
		e.broken(cNonCanonical, "get", err)
	} else if b.v != nil {
		e.fail(cNonCanonical, "re-encoded: stored under SHA-1 of the canonical form")
	} else if !bytes.Equal(a.v, nc) {
		e.fail(cNonCanonical, "accepted, but get under SHA-1 of the bytes sent returns %q", a.v)
	} else {
		e.pass(cNonCanonical, "stored verbatim under SHA-1 of the bytes sent")
	}

	// An immutable put carrying seq (anacrolix/dht sends seq 0).
	v = str("conformance immutable with seq " + nonce)
	r, err = e.putImmutable(s, v, dict{"seq": 0})
	stored(cImmutableSeq, r, err, krpc.ID(sha1.Sum(v)), v, "an immutable put with seq 0")

	// Sizes.
	v = str(strings.Repeat("x", 996-len(nonce)) + nonce) // 1000 bytes bencoded
	r, err = e.putImmutable(s, v, nil)
	stored(cV1000, r, err, krpc.ID(sha1.Sum(v)), v, fmt.Sprintf("a %d-byte v", len(v)))
	v = str(strings.Repeat("y", 997-len(nonce)) + nonce) // 1001 bytes
	if r, err := e.putImmutable(s, v, nil); err != nil {
		e.broken(cV1001, "put", err)
	} else if code, _ := r.errCode(); code == 205 {
		e.pass(cV1001, "%s", r.describe())
	} else if r.y() == "r" {
		e.pass(cV1001, "a %d-byte v accepted (the BEP lets a node store more)", len(v))
	} else {
		e.fail(cV1001, "a %d-byte v answered with %s", len(v), r.describe())
	}

	// Mutable items under a fresh key.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	k := []byte(pub)
	target := mutableTarget(k, nil)
	val := func(n int64, tag string) []byte { return str(fmt.Sprintf("seq %d %s %s", n, tag, nonce)) }
	readSeq := func() (item, error) { return e.get(e.main, target, nil) }
	if r, err := e.put(s, mput{k: k, priv: priv, seq: 5, v: val(5, "a")}); err != nil {
		e.broken(cMutable, "put", err)
	} else if r.y() != "r" {
		e.fail(cMutable, "signed put refused: %s", r.describe())
	} else if it, err := readSeq(); err != nil {
		e.broken(cMutable, "get", err)
	} else if it.k != string(k) || !it.hasSq || it.seq != 5 || !bytes.Equal(it.v, val(5, "a")) {
		e.fail(cMutable, "get returns k %x, seq %d, v %q", it.k, it.seq, it.v)
	} else {
		e.pass(cMutable, "stored under SHA-1(k), returned with seq 5")
		if mutableTarget([]byte(it.k), nil) == target && ed25519.Verify(pub, signBuffer(nil, it.seq, it.v), []byte(it.sig)) {
			e.pass(cGetVerifiable, "k hashes to the target and the signature verifies")
		} else {
			e.fail(cGetVerifiable, "returned k or sig does not verify")
		}
	}
	expectSeq := func(c *Check, want int64, wantV []byte) (bool, string) {
		it, err := readSeq()
		if err != nil {
			e.broken(c, "get", err)
			return false, ""
		}
		if it.seq != want || !bytes.Equal(it.v, wantV) {
			return false, fmt.Sprintf("now seq %d, v %q", it.seq, it.v)
		}
		return true, ""
	}
	refusal := func(c *Check, r *reply, err error, wantSeq int64, wantV []byte, code int64) {
		if err != nil && err != errNoReply {
			e.broken(c, "put", err)
			return
		}
		ok, now := expectSeq(c, wantSeq, wantV)
		if r != nil && r.y() == "r" {
			if ok {
				e.fail(c, "answered success, though the item was kept unchanged: the writer is told it stored")
			} else {
				e.fail(c, "accepted: %s", now)
			}
			return
		}
		got := describe(r)
		switch {
		case now == "" && !ok:
		case !ok:
			e.fail(c, "answered %s, yet the item changed: %s", got, now)
		case code != 0 && r != nil:
			if c2, _ := r.errCode(); c2 != code {
				e.fail(c, "refused with %s, not %d", got, code)
				return
			}
			e.pass(c, "refused: %s", got)
		default:
			e.pass(c, "refused (%s), item unchanged", got)
		}
	}
	r, err = e.put(s, mput{k: k, priv: priv, seq: 4, v: val(4, "a")})
	refusal(cSeqLower, r, err, 5, val(5, "a"), 0)
	r, err = e.put(s, mput{k: k, priv: priv, seq: 5, v: val(5, "b")})
	refusal(cSeqEqualDiff, r, err, 5, val(5, "a"), 0)
	if code, _ := codeOf(r); code == 302 {
		e.pass(cSeqEqualCode, "%s", r.describe())
	} else if err != nil && err != errNoReply {
		e.broken(cSeqEqualCode, "put", err)
	} else {
		e.fail(cSeqEqualCode, "equal seq, different v answered with %s", describe(r))
	}
	if r, err := e.put(s, mput{k: k, priv: priv, seq: 5, v: val(5, "a")}); err != nil {
		e.broken(cSeqEqualSame, "put", err)
	} else if r.y() == "r" {
		e.pass(cSeqEqualSame, "identical re-put accepted")
	} else {
		e.fail(cSeqEqualSame, "identical re-put answered with %s", r.describe())
	}
	if r, err := e.put(s, mput{k: k, priv: priv, seq: 6, v: val(6, "a")}); err != nil {
		e.broken(cSeqHigher, "put", err)
	} else if r.y() != "r" {
		e.fail(cSeqHigher, "seq 6 over 5 answered with %s", r.describe())
	} else if ok, now := expectSeq(cSeqHigher, 6, val(6, "a")); ok {
		e.pass(cSeqHigher, "seq 6 replaced seq 5")
	} else if now != "" {
		e.fail(cSeqHigher, "seq 6 accepted, but %s", now)
	}
	r, err = e.put(s, mput{k: k, priv: priv, seq: 7, v: val(7, "a"), cas: i64(5)})
	refusal(cCASMismatch, r, err, 6, val(6, "a"), 301)
	if r, err := e.put(s, mput{k: k, priv: priv, seq: 7, v: val(7, "a"), cas: i64(6)}); err != nil {
		e.broken(cCASMatch, "put", err)
	} else if r.y() != "r" {
		e.fail(cCASMatch, "cas 6 over seq 6 answered with %s", r.describe())
	} else if ok, now := expectSeq(cCASMatch, 7, val(7, "a")); ok {
		e.pass(cCASMatch, "cas 6 matched, seq 7 stored")
	} else if now != "" {
		e.fail(cCASMatch, "accepted, but %s", now)
	}
	if a, err := e.get(e.main, target, dict{"seq": 7}); err != nil {
		e.broken(cGetSeqOmits, "get", err)
	} else if b, err := e.get(e.main, target, dict{"seq": 6}); err != nil {
		e.broken(cGetSeqOmits, "get", err)
	} else if a.v != nil || a.k != "" || a.sig != "" {
		e.fail(cGetSeqOmits, "get with seq 7 (stored 7) still carries k, v or sig")
	} else if b.v == nil {
		e.fail(cGetSeqOmits, "get with seq 6 (stored 7) carries no v")
	} else {
		e.pass(cGetSeqOmits, "seq 7: k, v, sig omitted; seq 6: item sent")
	}

	salted := func(tag string) []byte { return []byte(tag + nonce) }
	checkStored := func(salt []byte) func() (bool, error) { return e.holds(mutableTarget(k, salt)) }
	salt := salted("cas-")
	r, err = e.put(s, mput{k: k, salt: salt, priv: priv, seq: 1, v: val(1, "cas"), cas: i64(9)})
	stored(cCASNoItem, r, err, mutableTarget(k, salt), val(1, "cas"), "a put with cas and nothing stored")

	salt = []byte(strings.Repeat("s", 64-len(nonce)) + nonce)
	r, err = e.put(s, mput{k: k, salt: salt, priv: priv, seq: 1, v: val(1, "salt64")})
	stored(cSalt64, r, err, mutableTarget(k, salt), val(1, "salt64"), "a 64-byte salt")
	salt = []byte(strings.Repeat("s", 65-len(nonce)) + nonce)
	r, err = e.put(s, mput{k: k, salt: salt, priv: priv, seq: 1, v: val(1, "salt65")})
	if code, _ := codeOf(r); err == nil && code == 207 {
		if ok, err := checkStored(salt)(); err == nil && !ok {
			e.pass(cSalt65, "%s", r.describe())
		} else {
			e.fail(cSalt65, "answered %s, yet stored (or get failed: %v)", r.describe(), err)
		}
	} else if err != nil && err != errNoReply {
		e.broken(cSalt65, "put", err)
	} else {
		e.fail(cSalt65, "a 65-byte salt answered with %s", describe(r))
	}

	badSig := func(c *Check, p mput, what string) {
		r, err := e.put(s, p)
		e.refused(c, r, err, checkStored(p.salt))
		if c == cSigInvalid && r != nil {
			if code, _ := r.errCode(); code != 206 && e.status(c) == Pass {
				e.mu.Lock()
				e.results[c.Name] = Result{Check: *c, Status: Fail, Reason: fmt.Sprintf("%s refused with %s, not 206", what, r.describe())}
				e.mu.Unlock()
			}
		}
	}
	salt = salted("badsig-")
	sig := ed25519.Sign(priv, signBuffer(salt, 1, val(1, "x")))
	sig[10] ^= 1
	badSig(cSigInvalid, mput{k: k, salt: salt, priv: priv, seq: 1, v: val(1, "x"), sig: sig}, "a flipped bit")
	salt = salted("nosalt-")
	badSig(cSigSalt, mput{k: k, salt: salt, priv: priv, seq: 1, v: val(1, "x"), sig: ed25519.Sign(priv, signBuffer(nil, 1, val(1, "x")))}, "a signature without the salt")
	salt = salted("seq-")
	badSig(cSigSeq, mput{k: k, salt: salt, priv: priv, seq: 2, v: val(2, "x"), sig: ed25519.Sign(priv, signBuffer(salt, 1, val(2, "x")))}, "a signature for seq 1")

	// A 31-byte k.
	k31 := k[:31]
	t31 := krpc.ID(sha1.Sum(k31))
	v = val(1, "k31")
	// Whichever target the node derives (SHA-1 of k, or of v as an
	// immutable item), one of the two puts carries a token for it.
	tv := krpc.ID(sha1.Sum(v))
	r1, err1 := e.put(s, mput{k: k31, priv: priv, seq: 1, v: v, target: &t31})
	r2, err2 := e.put(s, mput{k: k31, priv: priv, seq: 1, v: v, target: &tv})
	if r1 != nil && r1.y() == "r" || err1 != nil && err1 != errNoReply {
		r2, err2 = r1, err1
	}
	var where string
	e.refused(cKLength, r2, err2, func() (bool, error) {
		for _, t := range []krpc.ID{t31, tv} {
			if ok, err := e.holds(t)(); err != nil || ok {
				where = t.String()
				return ok, err
			}
		}
		return false, nil
	})
	if where != "" && e.status(cKLength) == Fail {
		e.mu.Lock()
		r := e.results[cKLength.Name]
		what := "SHA-1(k)"
		if where == tv.String() {
			what = "SHA-1(v), as an unsigned immutable item"
		}
		r.Reason += " under " + what
		e.results[cKLength.Name] = r
		e.mu.Unlock()
	}

	// The published vectors.
	for _, vec := range []struct {
		c      *Check
		salt   string
		sig    string
		target string
	}{{cVector, "", vectorSig1, vectorTarget1}, {cSaltVector, "foobar", vectorSig2, vectorTarget2}} {
		tgt := krpc.ID(unhex(vec.target))
		r, err := e.put(s, mput{k: unhex(vectorKey), salt: []byte(vec.salt), seq: 1, v: []byte(vectorV), sig: unhex(vec.sig), target: &tgt})
		switch code, _ := codeOf(r); {
		case err != nil:
			e.broken(vec.c, "put", err)
			continue
		case code == 302:
			e.skip(vec.c, "the node holds a newer item at the vector's target: %s", r.describe())
			continue
		case r.y() != "r":
			e.fail(vec.c, "the published vector refused: %s", r.describe())
			continue
		}
		it, err := e.get(e.main, tgt, nil)
		switch {
		case err != nil:
			e.broken(vec.c, "get", err)
		case string(it.v) != vectorV || it.k != string(unhex(vectorKey)) || it.sig != string(unhex(vec.sig)) || it.seq != 1:
			e.fail(vec.c, "get returns v %q seq %d", it.v, it.seq)
		default:
			e.pass(vec.c, "stored and returned unchanged under %s", vec.target)
		}
		if vec.salt != "" && err == nil {
			if it.rd.has("salt") {
				e.fail(cSaltNotEchoed, "get reply carries salt")
			} else if it.v != nil {
				e.pass(cSaltNotEchoed, "no salt in the get reply of a salted item")
			}
		}
	}
	if e.status(cSaltNotEchoed) == "" {
		if it, err := e.get(e.main, mutableTarget(k, salted("cas-")), nil); err == nil && it.v != nil {
			if it.rd.has("salt") {
				e.fail(cSaltNotEchoed, "get reply carries salt")
			} else {
				e.pass(cSaltNotEchoed, "no salt in the get reply of a salted item")
			}
		}
	}
}
