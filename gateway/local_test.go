package gateway

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// TestGatewayFindsLocalStore: an item and a peer stored on the gateway's
// own node only (put and announced to it by another client) are found
// through its gateway; its lookups never query the node itself, so only
// its own store can answer.
func TestGatewayFindsLocalStore(t *testing.T) {
	nodes := startNet(t, 3)
	holder := nodes[1]
	_, ts := serve(t, holder, nil)

	// A bare KRPC client: get a token from the holder, then store with it
	// there and nowhere else.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := krpc.NewServer(pc, nil, krpc.ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	me := krpc.RandomID()

	v := []byte("14:only on node 1")
	target := storage.ImmutableTarget(v)
	m, err := cl.Query(ctx, holder.Addr(), krpc.MethodGet, &krpc.Args{ID: me, Target: &target})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Query(ctx, holder.Addr(), krpc.MethodPut, &krpc.Args{ID: me, Token: m.R.Token, V: bencode.Bytes(v)}); err != nil {
		t.Fatalf("put to the holder: %v", err)
	}
	ih := krpc.RandomID()
	m, err = cl.Query(ctx, holder.Addr(), krpc.MethodGetPeers, &krpc.Args{ID: me, InfoHash: &ih})
	if err != nil {
		t.Fatal(err)
	}
	port := int64(6123)
	if _, err := cl.Query(ctx, holder.Addr(), krpc.MethodAnnouncePeer, &krpc.Args{ID: me, InfoHash: &ih, Port: &port, Token: m.R.Token}); err != nil {
		t.Fatalf("announce to the holder: %v", err)
	}

	var it Item
	callJSON(t, "GET", ts.URL+"/v1/immutable/"+target.String(), "", http.StatusOK, &it)
	if it.V != hex.EncodeToString(v) || it.Value == nil || *it.Value != "only on node 1" {
		t.Errorf("get through the holder's gateway: %+v, want the item it holds", it)
	}
	var peers peersOut
	callJSON(t, "GET", ts.URL+"/v1/peers/"+ih.String(), "", http.StatusOK, &peers)
	want := "127.0.0.1:6123"
	if !contains(peers.Peers, want) {
		t.Errorf("peers through the holder's gateway: %v, want %s", peers.Peers, want)
	}
	// The same through the stream.
	code, body := call(t, "GET", ts.URL+"/v1/peers/"+ih.String()+"?stream=1", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"peer":"`+want+`"`) {
		t.Errorf("peers stream through the holder's gateway: %d %s, want %s", code, body, want)
	}
}
