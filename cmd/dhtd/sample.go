package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// sampleCommand is `dhtd sample`: walk the network with sample_infohashes.
func sampleCommand() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "walk the DHT with sample_infohashes (BEP 51) and print the infohashes collected",
		Flags: lookupFlags(
			&cli.IntFlag{Name: "max-nodes", Value: 10000, Usage: "most nodes to visit"},
			&cli.DurationFlag{Name: "max-wait", Usage: "ask a node again after its interval if that is at most this (default: ask each node once)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return errors.New("usage: dhtd sample [flags]")
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				start := time.Now()
				asJSON := c.Bool("json")
				var found []string
				st, err := n.Sample(ctx, node.SampleOptions{
					MaxNodes: c.Int("max-nodes"),
					MaxWait:  c.Duration("max-wait"),
					OnSample: func(ih krpc.ID) {
						found = append(found, ih.String())
						if !asJSON {
							fmt.Fprintln(c.App.Writer, ih)
						}
					},
				})
				if errors.Is(err, context.DeadlineExceeded) {
					err = nil // --timeout ends a walk: print what it found
				}
				elapsed := time.Since(start)
				if asJSON {
					out := map[string]any{"infohashes": found, "nodes": st.Queried, "queries": st.Queries,
						"failed": st.Failed, "elapsed_ms": elapsed.Milliseconds()}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else {
					fmt.Fprintf(c.App.Writer, "%d infohashes from %d nodes (%d queries, %d failed), %v\n",
						len(found), st.Queried, st.Queries, st.Failed, elapsed.Round(time.Millisecond))
				}
				return err
			})
		},
	}
}

// scrapeCommand is `dhtd scrape INFOHASH` (BEP 33).
func scrapeCommand() *cli.Command {
	return &cli.Command{
		Name: "scrape", Usage: "estimate the seeds and peers of an infohash from BEP 33 bloom filters", ArgsUsage: "INFOHASH",
		Flags: lookupFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("usage: dhtd scrape INFOHASH")
			}
			ih, err := krpc.ParseID(c.Args().First())
			if err != nil {
				return fmt.Errorf("INFOHASH: %w", err)
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				res, err := n.Scrape(ctx, ih)
				if err != nil {
					return err
				}
				if res.Filters == 0 {
					return fmt.Errorf("scrape %s: none of the %d closest nodes sent bloom filters", ih, len(res.Lookup.Closest))
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"info_hash": ih.String(), "seeds": res.Seeds,
						"peers": res.Peers, "filters": res.Filters, "queried": res.Lookup.Queried})
				}
				fmt.Fprintf(c.App.Writer, "%s: ~%.0f seeds, ~%.0f peers (bloom filters of %d nodes, %d queried)\n",
					ih, res.Seeds, res.Peers, res.Filters, res.Lookup.Queried)
				return nil
			})
		},
	}
}
