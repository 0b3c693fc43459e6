package main

// `dhtd pkarr publish` and `dhtd pkarr resolve`: Pkarr signed DNS packets
// (BEP 44 mutable items of an Ed25519 key, no salt, seq = signing time in
// microseconds) from the shell, and `run --pkarr-keep FILE`.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

func pkarrCommand() *cli.Command {
	return &cli.Command{
		Name:  "pkarr",
		Usage: "publish and resolve Pkarr signed DNS records on the DHT",
		Subcommands: []*cli.Command{
			pkarrPublishCommand(),
			pkarrResolveCommand(),
		},
	}
}

func pkarrPublishCommand() *cli.Command {
	return &cli.Command{
		Name:  "publish",
		Usage: "sign DNS records with a key from `dhtd keygen` and put them on the DHT",
		ArgsUsage: "RECORD...\n\n   A RECORD is one argument \"NAME TYPE VALUE [TTL]\": NAME is @ (the key itself) or a\n" +
			"   name under it; TYPE is A, AAAA, TXT (a quoted value may hold spaces), CNAME, HTTPS or SVCB\n" +
			"   (VALUE \"PRIORITY TARGET [alpn=.. port=.. ipv4hint=.. ipv6hint=.. no-default-alpn]\");\n" +
			"   TTL defaults to 300. Example: dhtd pkarr publish --key k '@ A 192.0.2.1' '_x TXT \"hi there\" 60'",
		Flags: lookupFlags(
			&cli.StringFlag{Name: "key", Required: true, Usage: "key file from `dhtd keygen`"},
			&cli.BoolFlag{Name: "keep", Usage: "after the put, keep running and republish the packet every hour until SIGINT or SIGTERM"},
			republishFlag(),
		),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New("usage: dhtd pkarr publish --key FILE RECORD [RECORD]")
			}
			priv, err := readKey(c.String("key"))
			if err != nil {
				return err
			}
			pub := priv.Public().(ed25519.PublicKey)
			var recs []pkarr.Record
			for _, a := range c.Args().Slice() {
				r, err := pkarr.ParseRecord(a)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			packet, err := pkarr.EncodePacket(pkarr.KeyString(pub), recs)
			if err != nil {
				return err
			}
			p, err := pkarr.Sign(priv, packet, pkarr.SeqAt(time.Now()))
			if err != nil {
				return err
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				res, err := n.PutSigned(ctx, node.SignedPut{Key: pub, Value: p.Value(), Seq: p.Seq, Sig: p.Sig})
				if c.Bool("json") {
					out := map[string]any{
						"key": pkarr.KeyString(pub), "seq": p.Seq, "time": p.Time().Format(time.RFC3339Nano),
						"records": recs, "packet_bytes": len(p.Packet), "stored": res.Stored, "sent": res.Sent,
						"stored_at": gateway.NodeRefs(res.StoredAt),
					}
					if err != nil {
						out["error"] = err.Error()
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else {
					fmt.Fprintf(c.App.Writer, "key:  %s\nseq:  %d (%s)\n", pkarr.KeyString(pub), p.Seq, p.Time().Format(time.RFC3339Nano))
					for _, r := range recs {
						fmt.Fprintln(c.App.Writer, r)
					}
					fmt.Fprintf(c.App.Writer, "stored on %d of %d nodes\n", res.Stored, res.Sent)
				}
				if err == nil && c.Bool("keep") {
					// Ed25519 is deterministic: keepPut re-signs to the record just put.
					return keepPut(c, n, p.Value(), priv, node.PutOptions{}, res)
				}
				return err
			})
		},
	}
}

func pkarrResolveCommand() *cli.Command {
	return &cli.Command{
		Name:      "resolve",
		Usage:     "fetch the newest signed DNS packet of a key and print its records",
		ArgsUsage: "KEY (52 z-base-32 characters, or 64 hex)",
		Flags:     lookupFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("usage: dhtd pkarr resolve KEY")
			}
			pub, err := pkarr.ParseKey(c.Args().First())
			if err != nil {
				return fmt.Errorf("KEY: %w", err)
			}
			key := pkarr.KeyString(pub)
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				start := time.Now()
				res, err := n.Get(ctx, storage.MutableTarget(pub, nil), node.GetOptions{})
				elapsed := time.Since(start)
				if err != nil {
					return fmt.Errorf("resolve %s: %w", key, err)
				}
				p, err := pkarr.FromItem(res.Item)
				if err != nil {
					return fmt.Errorf("resolve %s: %w", key, err)
				}
				recs, err := pkarr.DecodePacket(p.Packet)
				if err != nil {
					return fmt.Errorf("resolve %s: %w", key, err)
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{
						"key": key, "seq": p.Seq, "time": p.Time().Format(time.RFC3339Nano),
						"records": recs, "nodes": gateway.NodeRefs(res.HeldBy), "queried": res.Lookup.Queried,
						"elapsed_ms": elapsed.Milliseconds(),
					})
				}
				w := c.App.Writer
				fmt.Fprintf(w, "; <<>> dhtd pkarr resolve <<>> %s\n", key)
				fmt.Fprintf(w, ";; seq %d, signed %s, held by %d nodes\n\n", p.Seq, p.Time().Format(time.RFC3339), len(res.HeldBy))
				fmt.Fprintln(w, ";; ANSWER SECTION:")
				for _, r := range recs {
					fmt.Fprintln(w, r)
				}
				fmt.Fprintf(w, "\n;; Query time: %d msec\n;; NODES QUERIED: %d\n;; PACKET SIZE: %d\n", elapsed.Milliseconds(), res.Lookup.Queried, len(p.Packet))
				return nil
			})
		},
	}
}

// maxPkarrKeep bounds the keys of a --pkarr-keep file.
const maxPkarrKeep = 10000

// pkarrKeepFlag is `run --pkarr-keep FILE`.
func pkarrKeepFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "pkarr-keep",
		Usage:   "file of Pkarr public keys (z-base-32 or hex, one a line, # comments) whose newest packets are fetched and republished every hour, no private key needed",
		EnvVars: []string{"DHTD_PKARR_KEEP"},
	}
}

// readPkarrKeep reads a --pkarr-keep file: one key a line, blank lines
// and # comments ignored, at most maxPkarrKeep keys.
func readPkarrKeep(path string) ([]ed25519.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--pkarr-keep: %w", err)
	}
	defer f.Close()
	var keys []ed25519.PublicKey
	seen := make(map[string]bool)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s, _, _ := strings.Cut(sc.Text(), "#")
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		k, err := pkarr.ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("--pkarr-keep %s:%d: %w", path, line, err)
		}
		if seen[string(k)] {
			continue
		}
		if len(keys) == maxPkarrKeep {
			return nil, fmt.Errorf("--pkarr-keep %s: more than %d keys", path, maxPkarrKeep)
		}
		seen[string(k)] = true
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--pkarr-keep %s: %w", path, err)
	}
	return keys, nil
}

// startPkarrKeep starts a Republisher on n for --pkarr-keep and registers
// its counters on n's registry; watchPkarrKeys then gives it the keys
// (once n has bootstrapped, so the first rounds find the network). Close
// the Republisher before closing n.
func startPkarrKeep(n *node.Node) (*node.Republisher, error) {
	r := node.NewRepublisher(n)
	stat := func(f func(node.RepublishStats) float64) func() float64 {
		return func() float64 { return f(r.Stats()) }
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dhtd", Subsystem: "pkarr_keep", Name: "keys", Help: "Pkarr keys whose packets --pkarr-keep republishes (at most 10000)."},
			stat(func(s node.RepublishStats) float64 { return float64(s.Kept) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dhtd", Subsystem: "pkarr_keep", Name: "republished_total", Help: "--pkarr-keep rounds that re-put a packet."},
			stat(func(s node.RepublishStats) float64 { return float64(s.Republished) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dhtd", Subsystem: "pkarr_keep", Name: "skipped_total", Help: "--pkarr-keep rounds skipped because enough copies exist (BEP 44)."},
			stat(func(s node.RepublishStats) float64 { return float64(s.Skipped) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dhtd", Subsystem: "pkarr_keep", Name: "failed_total", Help: "--pkarr-keep rounds that found no packet or in which no node stored it (retried after 5 min)."},
			stat(func(s node.RepublishStats) float64 { return float64(s.Failed) })),
	}
	for i, c := range cs {
		if err := n.Admin().Registry().Register(c); err != nil {
			for _, done := range cs[:i] {
				n.Admin().Registry().Unregister(done)
			}
			r.Close()
			return nil, fmt.Errorf("--pkarr-keep metrics: %w", err)
		}
	}
	return r, nil
}

// watchPkarrKeys has r watch every key, each key's first round at once.
// After r.Close it does nothing.
func watchPkarrKeys(r *node.Republisher, keys []ed25519.PublicKey, logger *slog.Logger) {
	for _, k := range keys {
		if err := r.Watch(k, nil, 0); err != nil {
			return
		}
	}
	logger.Info("pkarr-keep: republishing the newest packet of each key", "keys", len(keys), "interval", r.Interval())
}
