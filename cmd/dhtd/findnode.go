package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// findNodeCommand is `dhtd find_node TARGET`: an iterative find_node lookup
// (BEP 5) printing the K closest nodes that answered.
func findNodeCommand() *cli.Command {
	return &cli.Command{
		Name: "find_node", Usage: "find the K closest nodes to a target through the DHT", ArgsUsage: "TARGET",
		Flags: lookupFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("usage: dhtd find_node TARGET")
			}
			target, err := krpc.ParseID(c.Args().First())
			if err != nil {
				return fmt.Errorf("TARGET: %w", err)
			}
			return withNode(c, func(ctx context.Context, n *node.Node) error {
				start := time.Now()
				res, err := n.FindNode(ctx, target)
				elapsed := time.Since(start)
				if err == nil && len(res.Closest) == 0 {
					err = fmt.Errorf("find_node %s: %w (%d queried)", target, node.ErrNoAnswer, res.Queried)
				}
				if c.Bool("json") {
					type closestJSON struct {
						gateway.NodeRef
						RTTMillis float64 `json:"rtt_ms"`
					}
					nodes := make([]closestJSON, 0, len(res.Closest))
					for _, cn := range res.Closest {
						nodes = append(nodes, closestJSON{
							NodeRef:   gateway.NodeRef{ID: cn.Node.ID.String(), Addr: cn.Node.Addr.String()},
							RTTMillis: float64(cn.RTT.Microseconds()) / 1000,
						})
					}
					out := map[string]any{"target": target.String(), "nodes": nodes, "queried": res.Queried,
						"failed": res.Failed, "elapsed_ms": elapsed.Milliseconds()}
					if err != nil {
						out["error"] = err.Error()
					}
					if perr := printJSON(c.App.Writer, out); perr != nil {
						return perr
					}
					return err
				}
				for _, cn := range res.Closest {
					fmt.Fprintf(c.App.Writer, "%s %-21s %7.1f ms\n", cn.Node.ID, cn.Node.Addr, float64(cn.RTT.Microseconds())/1000)
				}
				fmt.Fprintf(c.App.Writer, "%d closest nodes, %d queried (%d failed), %v\n",
					len(res.Closest), res.Queried, res.Failed, elapsed.Round(time.Millisecond))
				return err
			})
		},
	}
}
