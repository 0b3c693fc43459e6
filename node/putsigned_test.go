package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/storage"
)

func TestPutSignedChecks(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	v := []byte("3:abc")
	sig := storage.SignMutable(priv, nil, 1, v)
	big := []byte("1000:" + strings.Repeat("x", 1000))
	tests := []struct {
		name string
		pub  ed25519.PublicKey
		salt []byte
		v    []byte
		seq  int64
		sig  []byte
		want error
	}{
		{"valid", pub, nil, v, 1, sig, nil},
		{"short key", pub[:31], nil, v, 1, sig, ErrBadItem},
		{"short sig", pub, nil, v, 1, sig[:63], ErrBadItem},
		{"long salt", pub, make([]byte, 65), v, 1, sig, ErrBadItem},
		{"negative seq", pub, nil, v, -1, sig, ErrBadItem},
		{"not bencode", pub, nil, []byte("3:ab"), 1, sig, ErrBadItem},
		{"too large", pub, nil, big, 1, storage.SignMutable(priv, nil, 1, big), ErrValueTooLarge},
		{"other seq", pub, nil, v, 2, sig, ErrInvalidSignature},
		{"other salt", pub, []byte("s"), v, 1, sig, ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSigned(tt.pub, tt.salt, tt.v, tt.seq, tt.sig)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("checkSigned: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestPutSignedCluster: a record signed outside the node is stored and
// read back; an older seq afterwards is refused with ErrSeqNotNewer and a
// cas that does not match with ErrCASMismatch.
func TestPutSignedCluster(t *testing.T) { synctest.Test(t, testPutSignedCluster) }

func testPutSignedCluster(t *testing.T) {
	_, nodes := startCluster(t, 5, nil)
	n := nodes[0]
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := func(val string, seq int64, cas *int64) error {
		v := []byte(val)
		_, err := n.PutSigned(ctx, SignedPut{Key: pub, Salt: []byte("salt"), Value: v, Seq: seq, Sig: storage.SignMutable(priv, []byte("salt"), seq, v), Cas: cas})
		return err
	}
	if err := put("1:a", 5, nil); err != nil {
		t.Fatalf("put seq 5: %v", err)
	}
	res, err := nodes[3].Get(ctx, storage.MutableTarget(pub, []byte("salt")), GetOptions{Salt: []byte("salt")})
	if err != nil || res.Item.Seq != 5 || string(res.Item.V) != "1:a" {
		t.Fatalf("get: %+v, %v: want seq 5 \"1:a\"", res.Item, err)
	}
	if err := put("1:b", 4, nil); !errors.Is(err, ErrSeqNotNewer) {
		t.Fatalf("put seq 4 after 5: %v, want ErrSeqNotNewer", err)
	}
	cas := int64(3)
	if err := put("1:c", 6, &cas); !errors.Is(err, ErrCASMismatch) {
		t.Fatalf("put seq 6 cas 3 over seq 5: %v, want ErrCASMismatch", err)
	}
}
