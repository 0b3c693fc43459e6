package main

// `dhtd put --keep`: after the put, stay running and republish the item
// every hour (BEP 44: publishers SHOULD re-put once an hour; storers may
// drop an item 2 h after its last put) until SIGINT or SIGTERM. The
// republishing is node.Republisher's; this file only wires it to the
// command line.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// keepFlag is `put --keep`.
func keepFlag() cli.Flag {
	return &cli.BoolFlag{
		Name:  "keep",
		Usage: "after the put, keep running and republish the item every hour until SIGINT or SIGTERM (--timeout then bounds the first put only)",
		Action: func(c *cli.Context, keep bool) error {
			if keep && c.String("gateway") != "" {
				return errors.New("--keep needs a node of its own: it cannot be combined with --gateway")
			}
			return nil
		},
	}
}

// republishFlag is `put --republish-every`: how often --keep re-puts.
func republishFlag() cli.Flag {
	return &cli.DurationFlag{
		Name:  "republish-every",
		Value: time.Hour,
		Usage: "with --keep: how often to republish (BEP 44 asks for at least once an hour; nodes drop an item 2 h after its last put)",
		Action: func(c *cli.Context, d time.Duration) error {
			if !c.Bool("keep") {
				return usageErrorf(cmdName(c), "--republish-every needs --keep")
			}
			if d < time.Second || d > time.Hour {
				return usageErrorf(cmdName(c), "--republish-every: %v, want 1s to 1h", d)
			}
			return nil
		},
	}
}

// keepPut keeps the item just put by n (v, and for a mutable item the
// record signed with priv at res.Seq) alive until SIGINT or SIGTERM. It
// reports on stderr, so that stdout holds only the put's result.
func keepPut(c *cli.Context, n *node.Node, v []byte, priv []byte, opts node.PutOptions, res node.PutResult) error {
	// Catch the signals before saying we are keeping the item, so that a
	// signal sent on seeing that line always ends in a clean stop.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	it := storage.Item{V: v}
	if priv != nil {
		key := ed25519.PrivateKey(priv)
		// Ed25519 signatures are deterministic: this is the record just put.
		it = storage.Item{
			V: v, K: key.Public().(ed25519.PublicKey), Salt: opts.Salt, Seq: res.Seq,
			Sig: storage.SignMutable(key, opts.Salt, res.Seq, v), Mutable: true,
		}
	}
	r := node.NewRepublisher(n)
	defer r.Close()
	// A line per round, so that a long-running --keep shows it works.
	var mu sync.Mutex
	r.OnRound(func(target krpc.ID, outcome string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "republished %s: %s: %v\n", target, outcome, err)
			return
		}
		fmt.Fprintf(c.App.ErrWriter, "republished %s: %s\n", target, outcome)
	})
	if err := r.Keep(it); err != nil {
		return fmt.Errorf("--keep: %w", err)
	}
	fmt.Fprintf(c.App.ErrWriter, "keeping %s: republishing every %v until SIGINT or SIGTERM\n", res.Target, r.Interval())
	<-ctx.Done()
	st := r.Stats()
	fmt.Fprintf(c.App.ErrWriter, "stopped keeping %s: %d republished, %d skipped, %d failed\n", res.Target, st.Republished, st.Skipped, st.Failed)
	return nil
}
