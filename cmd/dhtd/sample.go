package main

import (
	"context"
	"errors"
	"fmt"
	"math"
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
			&cli.DurationFlag{Name: "max-wait", Usage: "ask a node again after its interval if that is at most this", DefaultText: "0s, ask each node once"},
		),
		Action: func(c *cli.Context) error {
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				start := time.Now()
				asJSON := c.Bool("json")
				var found []string
				prog := newProgress(c)
				st, err := n.Sample(ctx, node.SampleOptions{
					MaxNodes: c.Int("max-nodes"),
					MaxWait:  c.Duration("max-wait"),
					OnSample: func(ih krpc.ID) {
						found = append(found, ih.String())
						if !asJSON {
							prog.done()
							fmt.Fprintln(c.App.Writer, ih)
						}
						prog.show("sampling: %d infohashes, %v", len(found), time.Since(start).Round(time.Second))
					},
				})
				prog.done()
				stopped := ""
				switch {
				case errors.Is(err, context.DeadlineExceeded) && len(found) > 0:
					err = nil // --timeout ends a walk: print what it found
					stopped = fmt.Sprintf(", stopped by --timeout %v", c.Duration("timeout"))
				case errors.Is(err, context.DeadlineExceeded):
					err = &timeoutError{after: c.Duration("timeout"), err: fmt.Errorf("sample: no infohashes from %d nodes (%d queries, %d failed)", st.Queried, st.Queries, st.Failed)}
				case err == nil && len(found) == 0:
					err = fmt.Errorf("sample: %w: no infohashes from %d nodes (%d queries, %d failed)", errNothingFound, st.Queried, st.Queries, st.Failed)
				}
				elapsed := time.Since(start)
				if asJSON {
					out := map[string]any{"infohashes": found, "nodes_queried": st.Queried, "queries": st.Queries,
						"failed": st.Failed, "elapsed_ms": elapsed.Milliseconds()}
					if err != nil {
						out["error"] = errorJSON(err)
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
				} else if err == nil {
					fmt.Fprintf(c.App.ErrWriter, "%d infohashes from %d nodes (%d queries, %d failed), %v%s\n",
						len(found), st.Queried, st.Queries, st.Failed, elapsed.Round(time.Millisecond), stopped)
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
			ih, err := krpc.ParseID(c.Args().First())
			if err != nil {
				return usageErrorf(cmdName(c), "INFOHASH: %w", err)
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				res, err := n.Scrape(ctx, ih)
				if err != nil {
					return err
				}
				if res.Filters == 0 {
					return fmt.Errorf("scrape %s: %w: none of the %d closest nodes sent bloom filters", ih, errNothingFound, len(res.Lookup.Closest))
				}
				// Estimates (BEP 33): whole numbers, as they are printed.
				seeds, peers := int64(math.Round(res.Seeds)), int64(math.Round(res.Peers))
				if c.Bool("json") {
					return printJSON(c.App.Writer, map[string]any{"info_hash": ih.String(), "seeds": seeds,
						"peers": peers, "filters": res.Filters, "queried": res.Lookup.Queried})
				}
				fmt.Fprintf(c.App.Writer, "%s: ~%d seeds, ~%d peers\n", ih, seeds, peers)
				fmt.Fprintf(c.App.ErrWriter, "bloom filters of %d nodes, %d queried\n", res.Filters, res.Lookup.Queried)
				return nil
			})
		},
	}
}
