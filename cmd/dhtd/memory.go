package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// gcFlags are the run command's garbage collector settings.
func gcFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "gc-percent", Value: defaultGCPercent, Usage: "garbage collector target: the heap may grow by this percentage of the live heap before a collection (Go's GOGC; the GOGC environment variable wins when set and this flag is not); -1 turns the collector off", EnvVars: []string{"DHTD_GC_PERCENT"}},
		&cli.StringFlag{Name: "memory-limit", Usage: "soft limit of the Go runtime's memory, e.g. 64MiB or 1GiB (Go's GOMEMLIMIT; the collector works harder as it nears the limit); empty: none, or GOMEMLIMIT when set", EnvVars: []string{"DHTD_MEMORY_LIMIT"}},
	}
}

// defaultGCPercent is the --gc-percent default. A node's live heap is
// small and steady (the table, the stores, the buffers), so collecting at
// +50% instead of Go's +100% costs little CPU; it also halves Go's 4 MiB
// minimum heap target, most of an idle node's heap.
const defaultGCPercent = 50

// applyGCFlags sets the collector's target and memory limit from the
// flags. The GOGC and GOMEMLIMIT environment variables keep precedence
// over the flags' defaults, not over a flag given explicitly.
func applyGCFlags(c *cli.Context) error {
	if _, env := os.LookupEnv("GOGC"); c.IsSet("gc-percent") || !env {
		debug.SetGCPercent(c.Int("gc-percent"))
	}
	if s := c.String("memory-limit"); s != "" {
		n, err := parseBytes(s)
		if err != nil {
			return fmt.Errorf("--memory-limit %q: %w", s, err)
		}
		debug.SetMemoryLimit(n)
	}
	return nil
}

// parseBytes parses a byte count with an optional B, KiB, MiB or GiB
// suffix (GOMEMLIMIT's syntax).
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a positive byte count such as 64MiB")
	}
	return n * mult, nil
}
