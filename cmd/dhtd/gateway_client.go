package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// gatewayFlag is the --gateway flag of get, put and peers: ask a running
// daemon's HTTP gateway instead of bootstrapping a short-lived node.
func gatewayFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "gateway",
		Usage:   "HOST:PORT (or URL) of a running 'dhtd run --http' gateway to ask instead of starting a node",
		EnvVars: []string{"DHTD_GATEWAY"},
	}
}

// newGatewayClient is the client of the --gateway flag's gateway, with
// --timeout as its HTTP timeout.
func newGatewayClient(c *cli.Context) *gateway.Client {
	return gateway.NewClient(c.String("gateway"), &http.Client{Timeout: c.Duration("timeout")})
}

// getViaGateway is `dhtd get --gateway`: the same output as a local get.
func getViaGateway(c *cli.Context, target krpc.ID) error {
	g := newGatewayClient(c)
	var it gateway.Item
	var err error
	if pk := c.String("pubkey"); pk != "" {
		var pub []byte
		if pub, err = hex.DecodeString(pk); err != nil {
			return usageErrorf(cmdName(c), "--pubkey: %v", err)
		}
		it, err = g.GetMutable(c.Context, pub, []byte(c.String("salt")))
	} else {
		it, err = g.GetImmutable(c.Context, target)
	}
	var v []byte
	if err == nil {
		if v, err = hex.DecodeString(it.V); err != nil {
			err = fmt.Errorf("gateway: v: %w", err)
		}
	}
	found := err == nil
	if c.Bool("json") {
		out := map[string]any{"target": target.String(), "found": found, "queried": it.Queried}
		if found {
			out["value"] = displayValue(v)
			out["v"] = hex.EncodeToString(v)
			out["count"] = it.Count
			if it.Seq != nil {
				out["seq"] = *it.Seq
				out["pubkey"] = it.PubKey
				out["sig"] = it.Sig
			}
		}
		if err != nil {
			out["error"] = errorJSON(err)
		}
		if perr := printJSON(c.App.Writer, out); perr != nil {
			return perr
		}
	} else if found {
		fmt.Fprintf(c.App.Writer, "%s\n", displayValue(v))
		if it.Seq != nil {
			fmt.Fprintf(c.App.ErrWriter, "seq %d, returned by %d nodes\n", *it.Seq, it.Count)
		}
	}
	return err
}

// putViaGateway is `dhtd put --gateway`. A mutable item is signed here
// with the key file's key; only the signature travels. Without --seq the
// seq is one above the gateway's current one (1 if it has none).
func putViaGateway(c *cli.Context, v []byte, priv ed25519.PrivateKey, opts node.PutOptions) error {
	g := newGatewayClient(c)
	var res gateway.PutResult
	var err error
	mutable := priv != nil
	if !mutable {
		target := storage.ImmutableTarget(v).String()
		res, err = g.PutImmutable(c.Context, v)
		res.Target = target
	} else {
		pub := priv.Public().(ed25519.PublicKey)
		target := storage.MutableTarget(pub, opts.Salt).String()
		var seq int64 = 1
		if opts.Seq != nil {
			seq = *opts.Seq
		} else {
			cur, gerr := g.GetMutable(c.Context, pub, opts.Salt)
			var se *gateway.StatusError
			switch {
			case gerr == nil && cur.Seq != nil:
				seq = *cur.Seq + 1
			case errors.As(gerr, &se) && se.Status == http.StatusNotFound:
			case gerr != nil:
				return fmt.Errorf("current seq: %w", gerr)
			}
		}
		res, err = g.PutMutable(c.Context, gateway.MutablePut{
			PubKey: pub, Salt: opts.Salt, V: v, Seq: seq, Cas: opts.Cas,
			Sig: storage.SignMutable(priv, opts.Salt, seq, v),
		})
		if res.Seq == nil {
			res.Seq = &seq
		}
		res.Target = target
	}
	if c.Bool("json") {
		out := map[string]any{"target": res.Target, "stored": len(res.StoredAt), "sent": res.Sent}
		if mutable && res.Seq != nil {
			out["seq"] = *res.Seq
		}
		if err != nil {
			out["error"] = errorJSON(err)
		}
		if perr := printJSON(c.App.Writer, out); perr != nil {
			return perr
		}
	} else if err == nil {
		fmt.Fprintf(c.App.Writer, "target: %s\n", res.Target)
		if mutable && res.Seq != nil {
			fmt.Fprintf(c.App.Writer, "seq:    %d\n", *res.Seq)
		}
		fmt.Fprintf(c.App.Writer, "stored on %d of %d nodes\n", len(res.StoredAt), res.Sent)
	}
	return err
}

// peersViaGateway is `dhtd peers --gateway`: it reads the gateway's
// stream, printing each peer as it arrives (unless --json).
func peersViaGateway(c *cli.Context, ih krpc.ID) error {
	g := newGatewayClient(c)
	start := time.Now()
	asJSON := c.Bool("json")
	peers := []string{}
	end, err := g.StreamPeers(c.Context, ih, func(p string) {
		peers = append(peers, p)
		if !asJSON {
			fmt.Fprintln(c.App.Writer, p)
		}
	})
	if err != nil && !errors.Is(err, gateway.ErrStreamCut) && end.Error == nil {
		return err // no answer, or no stream: nothing to report but the error
	}
	if err == nil && len(peers) == 0 {
		err = fmt.Errorf("peers %s: %w (%d nodes queried)", ih, errNothingFound, end.Queried)
	}
	elapsed := time.Since(start)
	if asJSON {
		out := map[string]any{"info_hash": ih.String(), "peers": peers, "queried": end.Queried, "elapsed_ms": elapsed.Milliseconds()}
		if err != nil {
			out["error"] = errorJSON(err)
		}
		if perr := printJSON(c.App.Writer, out); perr != nil {
			return perr
		}
	} else if err == nil {
		fmt.Fprintf(c.App.ErrWriter, "%d peers found, %d nodes queried, %v\n", len(peers), end.Queried, elapsed.Round(time.Millisecond))
	}
	return err
}
