package main

import (
	"bytes"
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
			&cli.BoolFlag{Name: "json", Usage: "print the JSON document as served, one line per family (a dual-stack node has two)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "bound on the request"},
		},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			body, err := fetchRouting(ctx, c, "/debug/routing")
			if err != nil {
				return err
			}
			var d node.RoutingDump
			if err := json.Unmarshal(body, &d); err != nil {
				return errors.New("table: the answer is not a routing dump")
			}
			dumps, bodies := []node.RoutingDump{d}, [][]byte{body}
			// A dual-stack node (BEP 32) serves the other family's table
			// under /debug/routing/<family>; a single-stack one answers 404.
			other := "/debug/routing/ipv6"
			if node.ListenFamily(d.Addr) == "ipv6" {
				other = "/debug/routing/ipv4"
			}
			if body, err := fetchRouting(ctx, c, other); err == nil {
				var d6 node.RoutingDump
				if err := json.Unmarshal(body, &d6); err != nil {
					return fmt.Errorf("table: %s: the answer is not a routing dump", other)
				}
				dumps, bodies = append(dumps, d6), append(bodies, body)
			} else if !errors.Is(err, errNoRouting) {
				return err
			}
			if c.Bool("json") {
				// One document per family, each as served (its "addr" says
				// which family it is): a stream jq reads as it is.
				for _, b := range bodies {
					if err := writeJSONLine(c.App.Writer, b); err != nil {
						return err
					}
				}
				return nil
			}
			for _, d := range dumps {
				printTable(c.App.Writer, d, len(dumps) > 1)
			}
			return nil
		},
	}
}

// writeJSONLine writes the JSON document doc compacted onto one line.
func writeJSONLine(w io.Writer, doc []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, doc); err != nil {
		return fmt.Errorf("table: the answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// errNoRouting is a 404 from a metrics listener: it serves no such table.
var errNoRouting = errors.New("table: no such routing table")

// fetchRouting reads path (/debug/routing or /debug/routing/<family>) from
// the --admin listener; a 404 is errNoRouting.
func fetchRouting(ctx context.Context, c *cli.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.String("admin")+path, nil)
	if err != nil {
		return nil, usageErrorf(cmdName(c), "--admin %q: %w", c.String("admin"), err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &timeoutError{after: c.Duration("timeout"), err: fmt.Errorf("table: no answer from %s", c.String("admin"))}
		}
		return nil, fmt.Errorf("table: is a dhtd run --metrics-listen at %s? %w", c.String("admin"), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("table: read: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", errNoRouting, path)
	}
	return nil, fmt.Errorf("table: %s: %s", resp.Status, body)
}

// printTable writes the routing table d as text; withFamily names its
// address family in the header (a dual-stack node prints one per family).
func printTable(w io.Writer, d node.RoutingDump, withFamily bool) {
	fam := ""
	if withFamily {
		fam = " (" + node.ListenFamily(d.Addr) + ")"
	}
	fmt.Fprintf(w, "node %s at %s%s: %d good, %d questionable, %d bad, %d buckets\n", d.ID, d.Addr, fam, d.Good, d.Quest, d.Bad, len(d.Buckets))
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
}
