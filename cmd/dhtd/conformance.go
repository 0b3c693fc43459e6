package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/internal/conformance"
)

func conformanceCommand() *cli.Command {
	return &cli.Command{
		Name:      "conformance",
		Usage:     "score any Mainline DHT node against BEP 5, 32, 33, 42, 43, 44 and 51 (black box, over UDP)",
		ArgsUsage: "ADDR",
		Description: "Sends queries (well-formed and malformed) to the node at ADDR and checks its answers. " +
			"Each check prints its name, BEP and section, level (MUST, SHOULD or practice) and PASS, FAIL or SKIP " +
			"with a reason. Exits 1 when a MUST check fails or the node does not answer. Groups: " +
			strings.Join(conformance.Groups(), ", ") + ".",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringSliceFlag{Name: "only", Usage: "run only this group of checks (repeatable)"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Second, Usage: "how long to wait for each answer"},
			&cli.DurationFlag{Name: "total", Value: 60 * time.Second, Usage: "bound on the whole run; checks not reached are skipped"},
			&cli.IntFlag{Name: "max-packets", Value: 200, Usage: "most packets sent from each source address"},
			&cli.Float64Flag{Name: "rate", Usage: "packets per second from each source address (0: unpaced); public nodes may block fast senders"},
			&cli.StringSliceFlag{Name: "source", Usage: "local address to send from (repeatable; default: 127.0.0.2-9 for a loopback ADDR, else the routed address)"},
			&cli.DurationFlag{Name: "token-wait", Usage: "run the token expiry check: wait this long (more than the node's token lifetime) before using a token"},
		},
		Action: runConformance,
	}
}

func runConformance(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("want 1 argument (ADDR), got %d; see --help", c.NArg())
	}
	target, err := resolveUDP(c.Args().First())
	if err != nil {
		return err
	}
	cfg := conformance.Config{
		Target:     target,
		Timeout:    c.Duration("timeout"),
		Total:      c.Duration("total"),
		MaxPackets: c.Int("max-packets"),
		Rate:       c.Float64("rate"),
		Only:       c.StringSlice("only"),
		TokenWait:  c.Duration("token-wait"),
	}
	for _, s := range c.StringSlice("source") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--source: %w", err)
		}
		cfg.Sources = append(cfg.Sources, a)
	}
	rep, runErr := conformance.Run(context.Background(), cfg)
	if rep == nil {
		return runErr
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printConformance(c.App.Writer, rep)
	}
	switch {
	case runErr != nil:
		return runErr
	case rep.MustFailed > 0:
		return fmt.Errorf("conformance: %d MUST check(s) failed", rep.MustFailed)
	}
	return nil
}

// printConformance writes one line per check (status, name, BEP and
// section, level, reason), the rule under each failure, and the closing
// count line.
func printConformance(w io.Writer, rep *conformance.Report) {
	who := rep.TargetID
	if rep.ClientVersion != "" {
		who += " (" + rep.ClientVersion + ")"
	}
	fmt.Fprintf(w, "conformance of %s, id %s, from %s\n", rep.Target, who, strings.Join(rep.Sources, " "))
	nameW, bepW := 0, 0
	where := func(r conformance.Result) string { return fmt.Sprintf("BEP %d, %s", r.BEP, r.Section) }
	for _, r := range rep.Results {
		nameW, bepW = max(nameW, len(r.Name)), max(bepW, len(where(r)))
	}
	for _, r := range rep.Results {
		fmt.Fprintf(w, "%-4s  %-*s  %-*s  %-8s  %s\n", r.Status, nameW, r.Name, bepW, where(r), r.Level, r.Reason)
		if r.Status == conformance.Fail {
			fmt.Fprintf(w, "      rule: %s\n", r.Rule)
		}
	}
	fmt.Fprintf(w, "conformance: %d passed, %d failed, %d skipped\n", rep.Passed, rep.Failed, rep.Skipped)
}
