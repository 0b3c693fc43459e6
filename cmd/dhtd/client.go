package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// lookupFlags are shared by the commands that run a lookup through the
// network from a short-lived node.
func lookupFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringSliceFlag{Name: "bootstrap", Usage: "bootstrap node host:port (repeatable); default: the public routers", EnvVars: []string{"DHTD_BOOTSTRAP"}},
		&cli.BoolFlag{Name: "no-bootstrap", Usage: "never contact the public routers: only the --bootstrap nodes, if any"},
		&cli.StringFlag{Name: "id", Usage: "node id of the short-lived node, 40 hex characters (default: random)"},
		&cli.StringFlag{Name: "listen", Value: "0.0.0.0:0", Usage: "UDP address of the short-lived node"},
		&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "bound on the whole command"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		&cli.BoolFlag{Name: "verbose", Usage: "log what the node does to stderr"},
	}, extra...)
}

// withNode starts a node, bootstraps it, runs f and closes the node. An
// error after --timeout has run out is a timeoutError.
func withNode(c *cli.Context, f func(ctx context.Context, n *node.Node) error) error {
	timeout := c.Duration("timeout")
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	level := slog.LevelError + 1
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	cfg := node.Config{
		Listen:    c.String("listen"),
		Bootstrap: c.StringSlice("bootstrap"),
		Logger:    slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})),
		// BEP 43: a short-lived lookup node says it is read-only, so no
		// node adds it to its table and keeps querying it after it exits.
		ReadOnly: true,
		// put --keep --republish-every (other commands have no such flag).
		RepublishInterval: c.Duration("republish-every"),
	}
	if s := c.String("id"); s != "" {
		id, err := krpc.ParseID(s)
		if err != nil {
			return fmt.Errorf("--id: %w", err)
		}
		cfg.ID = id
	}
	if len(cfg.Bootstrap) == 0 && !c.Bool("no-bootstrap") {
		cfg.Bootstrap = defaultRouters
	}
	if err := checkBootstrapSyntax(cmdName(c), cfg.Bootstrap); err != nil {
		return err
	}
	if _, err := resolveBootstrap(ctx, cfg.Bootstrap); err != nil {
		return timedOut(ctx, timeout, err)
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	cfg.Logger.Debug("lookup node", "id", n.ID(), "addr", n.Addr(), "bootstrap", cfg.Bootstrap)
	if len(cfg.Bootstrap) > 0 {
		if err := n.Bootstrap(ctx); err != nil {
			return timedOut(ctx, timeout, err)
		}
	}
	return timedOut(ctx, timeout, f(ctx, n))
}

// refusalJSON is a node that refused a write, in --json output.
type refusalJSON struct {
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	Code    int64  `json:"code"`
	Message string `json:"message"`
}

// refusalsJSON lists refusals for --json output (never null).
func refusalsJSON(es []node.NodeError) []refusalJSON {
	out := make([]refusalJSON, 0, len(es))
	for _, e := range es {
		out = append(out, refusalJSON{ID: e.Node.ID.String(), Addr: e.Node.Addr.String(), Code: e.Code, Message: e.Msg})
	}
	return out
}

// printRefusals prints one line per node that refused a write.
func printRefusals(w io.Writer, es []node.NodeError) {
	for _, e := range es {
		fmt.Fprintf(w, "refused by %s\n", e)
	}
}

// timedOut makes err a timeoutError if ctx's deadline (after) has passed.
// An error of a lookup in which no node answered is one too, with no
// bound named: each query ran out its own timeout.
func timedOut(ctx context.Context, after time.Duration, err error) error {
	var te *timeoutError
	switch {
	case err == nil || errors.As(err, &te):
		return err
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &timeoutError{after: after, err: err}
	case errors.Is(err, node.ErrNoAnswer):
		return &timeoutError{err: err}
	}
	return err
}

// cmdName is the full name of the command c runs, "dhtd get".
func cmdName(c *cli.Context) string { return c.Command.HelpName }

func printJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func peersCommand() *cli.Command {
	return &cli.Command{
		Name: "peers", Usage: "find the peers of an infohash through the DHT", ArgsUsage: "INFOHASH",
		Flags: lookupFlags(gatewayFlag()),
		Action: func(c *cli.Context) error {
			ih, err := krpc.ParseID(c.Args().First())
			if err != nil {
				return usageErrorf(cmdName(c), "INFOHASH: %w", err)
			}
			if c.String("gateway") != "" {
				return peersViaGateway(c, ih)
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				start := time.Now()
				asJSON := c.Bool("json")
				prog := newProgress(c)
				found := 0
				res, err := n.GetPeers(ctx, ih, func(p netip.AddrPort) {
					found++
					if !asJSON {
						prog.done()
						fmt.Fprintln(c.App.Writer, p)
					}
					prog.show("looking up: %d peers, %v", found, time.Since(start).Round(100*time.Millisecond))
				})
				prog.done()
				peers := make([]string, 0, len(res.Peers))
				for _, p := range res.Peers {
					peers = append(peers, p.String())
				}
				elapsed := time.Since(start)
				if err == nil && len(peers) == 0 {
					err = fmt.Errorf("peers %s: %w (%d nodes queried)", ih, errNothingFound, res.Lookup.Queried)
				}
				err = timedOut(ctx, c.Duration("timeout"), err)
				if asJSON {
					type heldJSON struct {
						gateway.NodeRef
						Peers []string `json:"peers"`
					}
					held := make([]heldJSON, 0, len(res.HeldBy))
					for _, h := range res.HeldBy {
						hj := heldJSON{NodeRef: gateway.NodeRef{ID: h.Node.ID.String(), Addr: h.Node.Addr.String()}}
						for _, p := range h.Peers {
							hj.Peers = append(hj.Peers, p.String())
						}
						held = append(held, hj)
					}
					out := map[string]any{"info_hash": ih.String(), "peers": peers, "held_by": held, "queried": res.Lookup.Queried, "elapsed_ms": elapsed.Milliseconds()}
					if err != nil {
						out["error"] = errorJSON(err)
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else if err == nil {
					fmt.Fprintf(c.App.ErrWriter, "%d peers found, %d nodes queried, %v\n", len(peers), res.Lookup.Queried, elapsed.Round(time.Millisecond))
				}
				return err
			})
		},
	}
}

func announceCommand() *cli.Command {
	return &cli.Command{
		Name: "announce", Usage: "announce this host as a peer of an infohash", ArgsUsage: "INFOHASH",
		Flags: lookupFlags(
			&cli.IntFlag{Name: "port", Usage: "the port peers should connect to"},
			&cli.BoolFlag{Name: "implied-port", Usage: "let storers use the UDP source port instead"},
		),
		Action: func(c *cli.Context) error {
			ih, err := krpc.ParseID(c.Args().First())
			if err != nil {
				return usageErrorf(cmdName(c), "INFOHASH: %w", err)
			}
			if !c.Bool("implied-port") && (c.Int("port") <= 0 || c.Int("port") > 65535) {
				return usageErrorf(cmdName(c), "--port %d: want 1..65535 (or give --implied-port)", c.Int("port"))
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				res, err := n.Announce(ctx, ih, node.AnnounceOptions{Port: c.Int("port"), ImpliedPort: c.Bool("implied-port")})
				if c.Bool("json") {
					out := map[string]any{"info_hash": ih.String(), "port": c.Int("port"), "announced": res.Announced, "accepted": res.Accepted,
						"stored_at": gateway.NodeRefs(res.StoredAt), "refused_by": refusalsJSON(res.RefusedBy), "unanswered": gateway.NodeRefs(res.Unanswered),
						"queried": res.Peers.Lookup.Queried, "local_addr": n.Addr().String()}
					if err != nil {
						out["error"] = errorJSON(timedOut(ctx, c.Duration("timeout"), err))
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else if err == nil {
					fmt.Fprintf(c.App.Writer, "announced to %d nodes, %d accepted\n", res.Announced, res.Accepted)
					printRefusals(c.App.Writer, res.RefusedBy)
				}
				return refusedBy(err, res.Announced, res.Errors)
			})
		},
	}
}

func putCommand() *cli.Command {
	return &cli.Command{
		Name: "put", Usage: "store a BEP 44 item (immutable, or mutable with --key)", ArgsUsage: "VALUE",
		Flags: lookupFlags(
			&cli.StringFlag{Name: "key", Usage: "key file from 'dhtd keygen': put a mutable item"},
			&cli.StringFlag{Name: "salt", Usage: "salt of the mutable item"},
			&cli.Int64Flag{Name: "seq", Usage: "sequence number", DefaultText: "current + 1"},
			&cli.Int64Flag{Name: "cas", Usage: "only replace the item if its seq is this", DefaultText: "none"},
			&cli.BoolFlag{Name: "bencoded", Usage: "VALUE is raw bencode, not a string"},
			gatewayFlag(),
			keepFlag(),
			republishFlag(),
		),
		Action: func(c *cli.Context) error {
			v := encodeValue(c.Args().First(), c.Bool("bencoded"))
			if err := storage.CheckBencode(v); err != nil {
				return usageErrorf(cmdName(c), "VALUE: %w", err)
			}
			if len(v) > storage.MaxValueLen {
				return usageErrorf(cmdName(c), "VALUE: %d bytes bencoded, at most %d (BEP 44)", len(v), storage.MaxValueLen)
			}
			if len(c.String("salt")) > storage.MaxSaltLen {
				return usageErrorf(cmdName(c), "--salt: %d bytes, at most %d (BEP 44)", len(c.String("salt")), storage.MaxSaltLen)
			}
			var mutable bool
			var opts node.PutOptions
			var keyPriv, keyPub []byte
			if path := c.String("key"); path != "" {
				priv, err := readKey(path)
				if err != nil {
					return err
				}
				mutable, keyPriv = true, priv
				keyPub = priv.Public().(ed25519.PublicKey)
				opts.Salt = []byte(c.String("salt"))
				if c.IsSet("seq") {
					s := c.Int64("seq")
					opts.Seq = &s
				}
				if c.IsSet("cas") {
					s := c.Int64("cas")
					opts.Cas = &s
				}
			} else if c.IsSet("salt") || c.IsSet("seq") || c.IsSet("cas") {
				return usageErrorf(cmdName(c), "--salt, --seq and --cas need --key (a mutable item)")
			}
			if c.String("gateway") != "" {
				return putViaGateway(c, v, keyPriv, opts)
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				var res node.PutResult
				var err error
				if mutable {
					res, err = n.PutMutable(ctx, keyPriv, v, opts)
				} else {
					res, err = n.PutImmutable(ctx, v)
				}
				err = timedOut(ctx, c.Duration("timeout"), refusedBy(err, res.Sent, res.Errors))
				if c.Bool("json") {
					out := map[string]any{"stored": res.Stored, "sent": res.Sent,
						"stored_at": gateway.NodeRefs(res.StoredAt), "refused_by": refusalsJSON(res.RefusedBy), "unanswered": gateway.NodeRefs(res.Unanswered),
						"queried": res.Lookup.Queried}
					if res.Target != (krpc.ID{}) {
						out["target"] = res.Target.String()
					}
					if mutable {
						if res.Seq != 0 {
							out["seq"] = res.Seq
						}
						out["public_key"] = hex.EncodeToString(keyPub)
						out["salt"] = string(opts.Salt)
					}
					if len(res.Errors) > 0 {
						codes := map[string]int{}
						for k, v := range res.Errors {
							codes[strconv.FormatInt(k, 10)] = v
						}
						out["errors"] = codes
					}
					if err != nil {
						out["error"] = errorJSON(err)
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else if err == nil {
					fmt.Fprintf(c.App.Writer, "target:     %s\n", res.Target)
					if mutable {
						fmt.Fprintf(c.App.Writer, "public key: %s\nsalt:       %q\nseq:        %d\n", hex.EncodeToString(keyPub), opts.Salt, res.Seq)
					}
					fmt.Fprintf(c.App.Writer, "stored on %d of %d nodes\n", res.Stored, res.Sent)
					printRefusals(c.App.Writer, res.RefusedBy)
				}
				if err == nil && c.Bool("keep") {
					return keepPut(c, n, v, keyPriv, opts, res)
				}
				return err
			})
		},
	}
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name: "get", Usage: "fetch a BEP 44 item by target, or a mutable one by --pubkey or --key", ArgsUsage: "[TARGET]",
		Flags: lookupFlags(
			&cli.StringFlag{Name: "pubkey", Usage: "public key (64 hex characters) of a mutable item"},
			&cli.StringFlag{Name: "key", Usage: "key file from `dhtd keygen`: fetch the mutable item of its public key"},
			&cli.StringFlag{Name: "salt", Usage: "salt of the mutable item"},
			gatewayFlag(),
		),
		Action: func(c *cli.Context) error {
			var target krpc.ID
			var opts node.GetOptions
			switch {
			case c.String("key") != "" && c.String("pubkey") == "" && c.NArg() == 0:
				priv, err := readKey(c.String("key"))
				if err != nil {
					return err
				}
				opts.Salt = []byte(c.String("salt"))
				target = storage.MutableTarget(priv.Public().(ed25519.PublicKey), opts.Salt)
			case c.String("pubkey") != "" && c.String("key") == "" && c.NArg() == 0:
				pub, err := hex.DecodeString(c.String("pubkey"))
				if err != nil || len(pub) != 32 {
					return usageErrorf(cmdName(c), "--pubkey: want 64 hex characters")
				}
				opts.Salt = []byte(c.String("salt"))
				target = storage.MutableTarget(pub, opts.Salt)
			case c.NArg() == 1 && c.String("pubkey") == "" && c.String("key") == "":
				var err error
				if target, err = krpc.ParseID(c.Args().First()); err != nil {
					return usageErrorf(cmdName(c), "TARGET: %w", err)
				}
				if c.IsSet("salt") {
					// The salt is part of a mutable item's target: with the
					// target given it has no use (BEP 44).
					return usageErrorf(cmdName(c), "--salt needs --pubkey: a TARGET already includes the salt")
				}
			case c.NArg() == 1:
				return usageErrorf(cmdName(c), "give TARGET or --pubkey/--key, not both")
			default:
				return usageErrorf(cmdName(c), "missing argument: want TARGET, --pubkey HEX [--salt S] or --key FILE [--salt S]")
			}
			if c.String("gateway") != "" {
				return getViaGateway(c, target)
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				res, err := n.Get(ctx, target, opts)
				err = timedOut(ctx, c.Duration("timeout"), err)
				if c.Bool("json") {
					out := map[string]any{"target": target.String(), "found": res.Found, "queried": res.Lookup.Queried}
					if res.Found {
						out["value"] = displayValue(res.Item.V)
						out["v"] = hex.EncodeToString(res.Item.V)
						out["count"] = res.Count
						out["held_by"] = gateway.NodeRefs(res.HeldBy)
						if res.Item.Mutable {
							out["seq"] = res.Item.Seq
							out["pubkey"] = hex.EncodeToString(res.Item.K)
							out["sig"] = hex.EncodeToString(res.Item.Sig)
						}
					}
					if err != nil {
						out["error"] = errorJSON(err)
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else if res.Found {
					fmt.Fprintf(c.App.Writer, "%s\n", displayValue(res.Item.V))
					if res.Item.Mutable {
						fmt.Fprintf(c.App.ErrWriter, "seq %d, returned by %d nodes\n", res.Item.Seq, res.Count)
					}
				}
				return err
			})
		},
	}
}
