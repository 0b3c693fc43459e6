package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/node"
)

func tableCommand() *cli.Command {
	return &cli.Command{
		Name:  "table",
		Usage: "print the routing table of a running node (from its metrics listener)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "admin", Value: "127.0.0.1:9181", Usage: "the node's --metrics-listen address"},
			&cli.BoolFlag{Name: "json", Usage: "print the JSON document as served"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "bound on the request"},
		},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.String("admin")+"/debug/routing", nil)
			if err != nil {
				return usageErrorf(cmdName(c), "--admin %q: %w", c.String("admin"), err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					return &timeoutError{after: c.Duration("timeout"), err: fmt.Errorf("table: no answer from %s", c.String("admin"))}
				}
				return fmt.Errorf("table: is a dhtd run --metrics-listen at %s? %w", c.String("admin"), err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return fmt.Errorf("table: read: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("table: %s: %s", resp.Status, body)
			}
			if c.Bool("json") {
				_, err := c.App.Writer.Write(body)
				return err
			}
			var d node.RoutingDump
			if err := json.Unmarshal(body, &d); err != nil {
				return errors.New("table: the answer is not a routing dump")
			}
			w := c.App.Writer
			fmt.Fprintf(w, "node %s at %s: %d good, %d questionable, %d bad, %d buckets\n", d.ID, d.Addr, d.Good, d.Quest, d.Bad, len(d.Buckets))
			for _, b := range d.Buckets {
				if len(b.Nodes) == 0 && len(b.Replacements) == 0 {
					continue
				}
				changed := "never"
				if !b.LastChanged.IsZero() {
					changed = time.Since(b.LastChanged).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(w, "bucket %3d: %d/%d nodes, %d replacements, changed %s\n", b.Index, len(b.Nodes), b.Capacity, len(b.Replacements), changed)
				for _, n := range b.Nodes {
					seen := "never"
					if !n.LastResponse.IsZero() {
						seen = time.Since(n.LastResponse).Round(time.Second).String() + " ago"
					}
					rtt := "rtt ?"
					if n.RTT > 0 {
						rtt = fmt.Sprintf("rtt %.1f ms", n.RTTMillis)
					}
					fmt.Fprintf(w, "  %s %-21s %-12s %-13s answered %s, %d failures\n", n.ID, n.Addr, n.State, rtt, seen, n.Failures)
				}
			}
			return nil
		},
	}
}
