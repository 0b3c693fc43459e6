package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/internal/cpuprofile"
	"github.com/dhtd/dhtd/internal/sim"
)

// simCommand is `dhtd sim`: run a scenario on the deterministic simulator.
func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "run dhtd's node core on a simulated network of many nodes (virtual time, deterministic per seed)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 10000, Usage: "nodes in the network"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of every random draw: the same seed gives the same report (outside cost)"},
			&cli.StringFlag{Name: "scenario", Value: "lookup", Usage: "one of " + strings.Join(sim.Scenarios, ", ")},
			&cli.Float64Flag{Name: "unreachable", Value: 0.2, Usage: "share of nodes behind a NAT (they query but never answer)"},
			&cli.IntFlag{Name: "lookups", Value: 1000, Usage: "measured lookups"},
			&cli.IntFlag{Name: "hours", Value: 24, Usage: "simulated hours of the churn scenario"},
			&cli.IntFlag{Name: "items", Value: 100, Usage: "items published in the churn scenario"},
			&cli.IntFlag{Name: "warm-lookups", Value: 2, Usage: "random lookups per node while the network warms up (fuller routing tables, more events)"},
			&cli.BoolFlag{Name: "fill-buckets", Usage: "join as dhtd run does: after the lookup of its own id, each node looks up each bucket that has room (fuller tables, about twice the events)"},
			&cli.BoolFlag{Name: "full-tables", Usage: "after the warm-up, fill every reachable node's routing table from global knowledge, as full as the network allows (an upper bound of a longer warm-up, not a way to join)"},
			&cli.Float64Flag{Name: "loss", Value: 0.01, Usage: "share of packets lost"},
			&cli.IntFlag{Name: "workers", Usage: "goroutines processing the nodes' events side by side (0: one per core, up to 4, from 20,000 nodes); the report does not depend on it"},
			&cli.Float64Flag{Name: "mem-limit", Value: 10, Usage: "soft memory limit of the Go runtime in GiB while simulating (0: none)"},
			&cli.BoolFlag{Name: "progress", Usage: "print the simulated time to stderr every simulated minute"},
			&cli.PathFlag{Name: "cpuprofile", Usage: "write a CPU profile of the run to this file (go tool pprof)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return errors.New("usage: dhtd sim [flags]")
			}
			if gib := c.Float64("mem-limit"); gib > 0 {
				// The simulation holds every node's state in one heap: a
				// soft limit keeps the collector's slack from doubling it.
				debug.SetMemoryLimit(int64(gib * (1 << 30)))
				if os.Getenv("GOGC") == "" {
					// The limit bounds the heap: collect less often below it.
					debug.SetGCPercent(400)
				}
			}
			// sim.Config and NetConfig take zero for their defaults and
			// a negative share for none: a flag of 0 means none.
			loss, unreachable := c.Float64("loss"), c.Float64("unreachable")
			if loss == 0 {
				loss = -1
			}
			if unreachable == 0 {
				unreachable = -1
			}
			stop, err := cpuprofile.Start(c.Path("cpuprofile"))
			if err != nil {
				return err
			}
			defer stop()
			var progress func(time.Duration, uint64)
			if c.Bool("progress") {
				start := time.Now()
				progress = func(d time.Duration, events uint64) {
					fmt.Fprintf(c.App.ErrWriter, "simulated %v, %d events, %v wall\n", d, events, time.Since(start).Round(time.Second))
				}
			}
			rep, err := sim.Run(sim.Config{
				Progress:    progress,
				Scenario:    c.String("scenario"),
				Nodes:       c.Int("nodes"),
				Seed:        c.Uint64("seed"),
				Unreachable: unreachable,
				Lookups:     c.Int("lookups"),
				Hours:       c.Int("hours"),
				Items:       c.Int("items"),
				WarmLookups: c.Int("warm-lookups"),
				FillBuckets: c.Bool("fill-buckets"),
				FullTables:  c.Bool("full-tables"),
				Net:         sim.NetConfig{Loss: loss, Workers: c.Int("workers")},
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				return enc.Encode(rep)
			}
			return printSimReport(c.App.Writer, rep)
		},
	}
}

// printSimReport writes the report as text.
func printSimReport(w io.Writer, r sim.Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s: %d nodes (%.0f%% unreachable), seed %d, %.0f s simulated\n",
		r.Scenario, r.Nodes, r.UnreachablePct, r.Seed, r.SimTimeS)
	how := ""
	if r.FullTables {
		how = " (filled from global knowledge after the warm-up)"
	}
	fmt.Fprintf(&b, "routing tables: %.1f live nodes on average%s\n", r.TableNodesAvg, how)
	fmt.Fprintf(&b, "lookups: %d, %.2f%% found the closest node\n", r.Lookups, r.FoundClosestPct)
	fmt.Fprintf(&b, "  round trips p50/p90/p99: %d/%d/%d\n", r.RTTP50, r.RTTP90, r.RTTP99)
	fmt.Fprintf(&b, "  hops        p50/p90/p99: %d/%d/%d\n", r.HopsP50, r.HopsP90, r.HopsP99)
	fmt.Fprintf(&b, "  time (ms)   p50/p90/p99: %d/%d/%d\n", r.LookupMsP50, r.LookupMsP90, r.LookupMsP99)
	fmt.Fprintf(&b, "  closest answered (ms) p50/p90/p99: %d/%d/%d\n", r.ClosestMsP50, r.ClosestMsP90, r.ClosestMsP99)
	fmt.Fprintf(&b, "  packets per lookup: %.1f\n", r.PacketsPerLook)
	if v := r.Values; v != nil {
		fmt.Fprintf(&b, "  get_peers and get of published data: %d, %.2f%% got peers or the value, the first after (ms) p50/p90/p99: %d/%d/%d\n",
			v.Lookups, v.FoundPct, v.FirstMsP50, v.FirstMsP90, v.FirstMsP99)
	}
	if r.Items > 0 {
		fmt.Fprintf(&b, "items: %d, %.2f%% survived (found by a lookup), %.2f%% still stored by an up node\n",
			r.Items, r.ItemsSurvivedPct, r.ItemsHeldPct)
	}
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "phase %s: %d lookups, %.2f%% found the closest, round trips p50 %d p99 %d, %d ms p50",
			p.Name, p.Lookups, p.FoundClosestPct, p.RTTP50, p.RTTP99, p.LookupMsP50)
		if p.SybilSharePct > 0 {
			fmt.Fprintf(&b, ", sybil share of results %.2f%%", p.SybilSharePct)
		}
		if p.JoinedPct > 0 {
			fmt.Fprintf(&b, ", %.2f%% of joiners bootstrapped", p.JoinedPct)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "packets: %d sent, %d delivered, %d lost, %d blocked\n",
		r.Packets.Sent, r.Packets.Delivered, r.Packets.Lost, r.Packets.Blocked)
	fmt.Fprintf(&b, "cost: %d ms wall, %d MiB peak heap, %d bytes per node, %d events\n",
		r.Cost.WallMs, r.Cost.PeakHeapBytes>>20, r.Cost.BytesPerNode, r.Cost.Events)
	_, err := io.WriteString(w, b.String())
	return err
}
