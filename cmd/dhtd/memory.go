package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

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

// releaseStartupPages drops this process's page table entries for the
// executable's read-only mappings (its code and read-only data), so that
// the pages touched only while starting (package initialisation, flag
// parsing, the setup of every subsystem) stop counting in its resident
// set; the pages the running node uses fault back in from the page
// cache on their next use. Only private mappings that are not writable
// and hold no anonymous (copied-on-write) page are released: their pages
// are the file's, so MADV_DONTNEED loses nothing and the kernel maps the
// same bytes again. A mapping that was written to, such as relocated
// read-only data of a position-independent build, is left alone. It
// returns the bytes of the mappings released.
func releaseStartupPages() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("release startup pages: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("release startup pages: %w", err)
	}
	defer f.Close()
	type span struct {
		lo, hi uintptr
		ok     bool // a read-only private mapping of exe
		anon   bool // holds copied-on-write pages
	}
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if rest, found := strings.CutPrefix(line, "Anonymous:"); found && len(spans) > 0 {
			if strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")) != "0" {
				spans[len(spans)-1].anon = true
			}
			continue
		}
		// A mapping's first line: "lo-hi perms offset dev inode [path]".
		lo, hi, isRange := strings.Cut(fields[0], "-")
		if !isRange || len(fields) < 5 {
			continue
		}
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		perms := fields[1]
		ok := len(fields) >= 6 && fields[5] == exe && len(perms) == 4 && perms[0] == 'r' && perms[1] != 'w' && perms[3] == 'p' && h > l
		spans = append(spans, span{lo: uintptr(l), hi: uintptr(h), ok: ok})
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("release startup pages: read /proc/self/smaps: %w", err)
	}
	var total int64
	for _, s := range spans {
		if !s.ok || s.anon {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, s.lo, s.hi-s.lo, syscall.MADV_DONTNEED); e != 0 {
			return total, fmt.Errorf("release startup pages: madvise %#x-%#x: %w", s.lo, s.hi, e)
		}
		total += int64(s.hi - s.lo)
	}
	return total, nil
}
