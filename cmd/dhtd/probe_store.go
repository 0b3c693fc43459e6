package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

func parseTokenFlag(c *cli.Context) (string, error) {
	tok, err := hex.DecodeString(c.String("token"))
	if err != nil {
		return "", fmt.Errorf("--token: %w", err)
	}
	return string(tok), nil
}

func probeGetPeersCommand() *cli.Command {
	return &cli.Command{
		Name: "get_peers", Usage: "get_peers ADDR INFOHASH", ArgsUsage: "ADDR INFOHASH",
		Flags: probeFlags(),
		Action: func(c *cli.Context) error {
			return probe(c, 2, func(id krpc.ID, args []string) (string, *krpc.Args, error) {
				ih, err := krpc.ParseID(args[1])
				if err != nil {
					return "", nil, fmt.Errorf("INFOHASH: %w", err)
				}
				return krpc.MethodGetPeers, &krpc.Args{ID: id, InfoHash: &ih}, nil
			})
		},
	}
}

func probeAnnounceCommand() *cli.Command {
	return &cli.Command{
		Name: "announce_peer", Usage: "announce_peer ADDR INFOHASH --port N --token HEX", ArgsUsage: "ADDR INFOHASH",
		Flags: probeFlags(
			&cli.Int64Flag{Name: "port", Usage: "port to announce"},
			&cli.BoolFlag{Name: "implied-port", Usage: "set implied_port=1"},
			&cli.StringFlag{Name: "token", Usage: "token (hex) from a get_peers answer of that node"},
			&cli.BoolFlag{Name: "seed", Usage: "set seed=1 (BEP 33)"},
		),
		Action: func(c *cli.Context) error {
			return probe(c, 2, func(id krpc.ID, args []string) (string, *krpc.Args, error) {
				ih, err := krpc.ParseID(args[1])
				if err != nil {
					return "", nil, fmt.Errorf("INFOHASH: %w", err)
				}
				tok, err := parseTokenFlag(c)
				if err != nil {
					return "", nil, err
				}
				a := &krpc.Args{ID: id, InfoHash: &ih, Token: tok}
				if c.IsSet("port") {
					p := c.Int64("port")
					a.Port = &p
				}
				if c.Bool("implied-port") {
					a.ImpliedPort = 1
				}
				if c.Bool("seed") {
					one := int64(1)
					a.Seed = &one
				}
				return krpc.MethodAnnouncePeer, a, nil
			})
		},
	}
}

func probeGetCommand() *cli.Command {
	return &cli.Command{
		Name: "get", Usage: "get ADDR TARGET [--seq N]", ArgsUsage: "ADDR TARGET",
		Flags: probeFlags(&cli.Int64Flag{Name: "seq", Usage: "send the item only if the stored seq is greater"}),
		Action: func(c *cli.Context) error {
			return probe(c, 2, func(id krpc.ID, args []string) (string, *krpc.Args, error) {
				target, err := krpc.ParseID(args[1])
				if err != nil {
					return "", nil, fmt.Errorf("TARGET: %w", err)
				}
				a := &krpc.Args{ID: id, Target: &target}
				if c.IsSet("seq") {
					s := c.Int64("seq")
					a.Seq = &s
				}
				return krpc.MethodGet, a, nil
			})
		},
	}
}

// probePutCommand sends one put exactly as asked, without checking the
// value locally, so a node's error answers (203, 205-207, 301, 302) can be
// provoked on purpose.
func probePutCommand() *cli.Command {
	return &cli.Command{
		Name: "put", Usage: "put ADDR VALUE --token HEX [--key FILE --salt S --seq N --cas N --sig HEX]", ArgsUsage: "ADDR VALUE",
		Flags: probeFlags(
			&cli.StringFlag{Name: "token", Usage: "token (hex) from a get answer of that node"},
			&cli.StringFlag{Name: "key", Usage: "key file: a mutable put signed with it"},
			&cli.StringFlag{Name: "salt", Usage: "salt (mutable)"},
			rawInt64Flag{&cli.Int64Flag{Name: "seq", Usage: "seq (mutable; may be negative, to see a node refuse it)", Value: 1}},
			rawInt64Flag{&cli.Int64Flag{Name: "cas", Usage: "cas (mutable)"}},
			&cli.StringFlag{Name: "sig", Usage: "send this signature (hex) instead of a valid one"},
			&cli.BoolFlag{Name: "bencoded", Usage: "VALUE is raw bencode, not a string (sent as is; empty: no v)"},
		),
		Action: func(c *cli.Context) error {
			return probe(c, 2, func(id krpc.ID, args []string) (string, *krpc.Args, error) {
				tok, err := parseTokenFlag(c)
				if err != nil {
					return "", nil, err
				}
				v := encodeValue(args[1], c.Bool("bencoded"))
				a := &krpc.Args{ID: id, Token: tok}
				if len(v) > 0 {
					a.V = bencode.Bytes(v) // "--bencoded ''" sends a put without v
				}
				if path := c.String("key"); path != "" {
					priv, err := readKey(path)
					if err != nil {
						return "", nil, err
					}
					seq := c.Int64("seq")
					salt := []byte(c.String("salt"))
					a.K = string(priv.Public().(ed25519.PublicKey))
					a.Seq = &seq
					a.Salt = string(salt)
					a.Sig = string(storage.SignMutable(priv, salt, seq, v))
					if c.IsSet("cas") {
						cas := c.Int64("cas")
						a.Cas = &cas
					}
				}
				if s := c.String("sig"); s != "" {
					sig, err := hex.DecodeString(s)
					if err != nil {
						return "", nil, fmt.Errorf("--sig: %w", err)
					}
					a.Sig = string(sig)
				}
				return krpc.MethodPut, a, nil
			})
		},
	}
}
