package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/dhtd/dhtd/krpc"
	"github.com/urfave/cli/v2"
)

// A key file holds the 32-byte ed25519 seed as 64 hex characters and a
// newline; it is written with mode 0600.

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "create an ed25519 key for BEP 44 mutable items (or import a seed, or show a key file's public key)",
		ArgsUsage: "[FILE]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "overwrite FILE if it exists"},
			&cli.StringFlag{Name: "seed", Usage: "import this 32-byte ed25519 seed (64 hex characters) instead of a random one"},
			&cli.StringFlag{Name: "show", Usage: "print the public key of this key file and write nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
		Action: func(c *cli.Context) error {
			printKey := func(path string, pub ed25519.PublicKey) error {
				if c.Bool("json") {
					return json.NewEncoder(c.App.Writer).Encode(map[string]string{"key_file": path, "public_key": hex.EncodeToString(pub)})
				}
				fmt.Fprintf(c.App.Writer, "public key: %s\nkey file:   %s\n", hex.EncodeToString(pub), path)
				return nil
			}
			if path := c.String("show"); path != "" {
				if c.NArg() != 0 || c.IsSet("seed") || c.Bool("force") {
					return usageErrorf(cmdName(c), "--show FILE takes no other argument, --seed or --force")
				}
				priv, err := readKey(path)
				if err != nil {
					return err
				}
				return printKey(path, priv.Public().(ed25519.PublicKey))
			}
			if c.NArg() != 1 {
				return usageErrorf(cmdName(c), "want FILE: dhtd keygen [--seed HEX] FILE, or dhtd keygen --show FILE")
			}
			path := c.Args().First()
			seed := make([]byte, ed25519.SeedSize)
			if s := c.String("seed"); s != "" {
				b, err := hex.DecodeString(strings.TrimSpace(s))
				if err != nil || len(b) != ed25519.SeedSize {
					return usageErrorf(cmdName(c), "--seed: want %d hex characters (a %d-byte ed25519 seed)", 2*ed25519.SeedSize, ed25519.SeedSize)
				}
				copy(seed, b)
			} else if _, err := rand.Read(seed); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if c.Bool("force") {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, 0o600)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			if _, err := fmt.Fprintln(f, hex.EncodeToString(seed)); err != nil {
				f.Close()
				return fmt.Errorf("keygen: write %s: %w", path, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("keygen: write %s: %w", path, err)
			}
			if err := os.Chmod(path, 0o600); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			return printKey(path, ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
		},
	}
}

// readKey loads a key file written by keygen.
func readKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("key file %s: want %d hex characters", path, 2*ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// encodeValue turns a VALUE argument into bencode: a string unless raw.
func encodeValue(s string, raw bool) []byte {
	if raw {
		return []byte(s)
	}
	return krpc.AppendString(nil, s)
}

// displayValue renders a bencoded value: the string if it is a printable
// byte string, else the raw bencode.
func displayValue(v []byte) string {
	if s, err := krpc.ParseString(v); err == nil && strconv.CanBackquote(string(s)) {
		return string(s)
	}
	return string(v)
}
