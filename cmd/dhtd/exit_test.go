package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// closedUDPPort is a loopback address on which nothing listens.
func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc := silentUDP(t)
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	return addr
}

// TestBadInputExitCodes runs each mistake an operator can make, and each
// way a command can fail, through the real binary: each must give exactly
// one line on stderr, naming its cause, nothing on stdout, and the
// documented exit code.
func TestBadInputExitCodes(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	ih := strings.Repeat("ab", 20)
	silent := silentUDP(t).LocalAddr().String()
	closed := closedUDPPort(t)
	refusing, _ := krpcErrorServer(t)
	seed, _ := inProcessNetwork(t, 2) // a network holding nothing
	boot := seed.Addr().String()
	keyFile := filepath.Join(t.TempDir(), "key")
	if r := runDhtd(t, "keygen", keyFile); r.code != 0 {
		t.Fatalf("keygen: exit %d: %s", r.code, r.stderr)
	}

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want []string // each must be in the line (case-insensitive)
	}{
		// Usage errors: exit 2, with a hint.
		{"unknown command", nil, []string{"foo"}, exitUsage, []string{`"foo"`, "see dhtd --help"}},
		{"unknown probe command", nil, []string{"probe", "foo"}, exitUsage, []string{`"dhtd probe foo"`, "see dhtd probe --help"}},
		{"unknown flag", nil, []string{"sample", "--bogus"}, exitUsage, []string{"--bogus", "see dhtd sample --help"}},
		{"duration not a duration", nil, []string{"sample", "--timeout", "abc"}, exitUsage, []string{"--timeout", "abc", "see dhtd sample --help"}},
		{"number from env not a number", []string{"DHTD_RATE_LIMIT=abc"}, []string{"run", "--no-bootstrap", "--storage", "memory"}, exitUsage, []string{"DHTD_RATE_LIMIT", "abc", "see dhtd run --help"}},
		{"stray argument to table", nil, []string{"table", "foo"}, exitUsage, []string{`"foo"`, "see dhtd table --help"}},
		{"stray argument to run", nil, []string{"run", "--listen", "127.0.0.1:0", "--storage", "memory", "extra"}, exitUsage, []string{`"extra"`, "see dhtd run --help"}},
		{"missing argument", nil, []string{"peers"}, exitUsage, []string{"INFOHASH", "see dhtd peers --help"}},
		{"negative max-nodes", nil, []string{"sample", "--max-nodes", "-1", "--bootstrap", boot}, exitUsage, []string{"--max-nodes -1", "negative"}},
		{"negative max-wait", nil, []string{"sample", "--max-wait", "-1s", "--bootstrap", boot}, exitUsage, []string{"--max-wait -1s", "negative"}},
		{"zero timeout", nil, []string{"sample", "--timeout", "0s", "--bootstrap", boot}, exitUsage, []string{"--timeout 0s", "positive"}},
		{"negative probe timeout", nil, []string{"probe", "ping", "--timeout", "-1s", silent}, exitUsage, []string{"--timeout -1s", "see dhtd probe ping --help"}},
		{"negative probe seq", nil, []string{"probe", "get", "--seq", "-1", silent, ih}, exitUsage, []string{"--seq -1"}},
		{"negative put seq", nil, []string{"put", "--key", keyFile, "--seq", "-1", "--bootstrap", silent, "v"}, exitUsage, []string{"--seq -1", "see dhtd put --help"}},
		{"salt with an immutable target", nil, []string{"get", ih, "--salt", "s", "--bootstrap", silent}, exitUsage, []string{"--salt", "--pubkey"}},
		{"infohash not hex", nil, []string{"peers", "xyz", "--bootstrap", silent}, exitUsage, []string{"INFOHASH"}},
		{"announce port zero", nil, []string{"announce", ih, "--port", "0", "--bootstrap", silent}, exitUsage, []string{"--port 0"}},
		{"run bootstrap without port", nil, []string{"run", "--bootstrap", "nonsense", "--storage", "memory", "--listen", "127.0.0.1:0"}, exitUsage, []string{`"nonsense"`, "missing port", "see dhtd run --help"}},
		{"lookup bootstrap without port", nil, []string{"peers", ih, "--bootstrap", "127.0.0.1"}, exitUsage, []string{`"127.0.0.1"`, "missing port"}},
		{"probe address without port", nil, []string{"probe", "ping", "127.0.0.1"}, exitUsage, []string{"missing port"}},
		{"value too long", nil, []string{"put", strings.Repeat("x", 1000), "--bootstrap", silent}, exitUsage, []string{"at most 1000"}},

		// Nothing found: exit 3.
		{"get finds nothing", nil, []string{"get", ih, "--bootstrap", boot, "--listen", "127.0.0.1:0"}, exitNotFound, []string{ih, "not found"}},
		{"peers finds nothing", nil, []string{"peers", ih, "--bootstrap", boot, "--listen", "127.0.0.1:0"}, exitNotFound, []string{ih, "nothing found"}},
		{"sample finds nothing", nil, []string{"sample", "--bootstrap", boot, "--listen", "127.0.0.1:0"}, exitNotFound, []string{"nothing found"}},

		// Timeouts: exit 4, naming the bound.
		{"peers from a silent node", nil, []string{"peers", ih, "--bootstrap", silent, "--timeout", "500ms"}, exitTimeout, []string{"timed out after 500ms"}},
		{"sample from a silent node", nil, []string{"sample", "--bootstrap", silent, "--timeout", "500ms"}, exitTimeout, []string{"timed out after 500ms"}},
		{"put to a silent node", nil, []string{"put", "v", "--bootstrap", silent, "--timeout", "500ms"}, exitTimeout, []string{"timed out after 500ms"}},
		{"probe a silent node", nil, []string{"probe", "ping", "--timeout", "300ms", silent}, exitTimeout, []string{"timed out after 300ms", silent}},

		// Refused by the remote: exit 5, with the code, message and node.
		{"probe a refusing node", nil, []string{"probe", "ping", refusing}, exitRefused, []string{refusing, "204", "Method Unknown"}},

		// Other errors: exit 1, naming the cause.
		{"probe a closed port", nil, []string{"probe", "ping", "--timeout", "10s", closed}, exitError, []string{closed, "connection refused"}},
		{"table of no node", nil, []string{"table", "--admin", closedTCP(t)}, exitError, []string{"connection refused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := runDhtdEnv(t, c.env, c.args...)
			if r.code != c.code {
				t.Errorf("dhtd %q: exit %d, want %d\nstderr:\n%s", c.args, r.code, c.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "dhtd: ") {
				t.Fatalf("dhtd %q: want one line \"dhtd: ...\" on stderr, got %d:\n%s", c.args, len(lines), r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(lines[0]), strings.ToLower(w)) {
					t.Errorf("dhtd %q: %q does not mention %q", c.args, lines[0], w)
				}
			}
			if r.stdout != "" {
				t.Errorf("dhtd %q: stdout %q, want none", c.args, r.stdout)
			}
			if c.name == "probe a closed port" && time.Since(start) > 5*time.Second {
				t.Errorf("probe of a closed port took %v: it waited for the timeout", time.Since(start))
			}
		})
	}
}

// closedTCP is a loopback TCP address on which nothing listens.
func closedTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestVersion checks `dhtd version` and `dhtd --version`: the version, a
// commit line and the Go version.
func TestVersion(t *testing.T) {
	dhtdBinary(t)
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runDhtd(t, args...)
		if r.code != 0 {
			t.Fatalf("dhtd %q: exit %d: %s", args, r.code, r.stderr)
		}
		for _, w := range []string{"dhtd " + node.Version, "commit ", "go1."} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("dhtd %q: %q does not hold %q", args, r.stdout, w)
			}
		}
	}
}

// TestExitCode maps each kind of error to its status.
func TestExitCode(t *testing.T) {
	ke := &krpc.Error{Code: 203, Msg: "Protocol Error"}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain", errors.New("disk full"), exitError},
		{"usage", usageErrorf("dhtd get", "bad"), exitUsage},
		{"wrapped usage", fmt.Errorf("x: %w", usageErrorf("dhtd get", "bad")), exitUsage},
		{"nothing found", fmt.Errorf("peers: %w", errNothingFound), exitNotFound},
		{"node not found", fmt.Errorf("get: %w", node.ErrNotFound), exitNotFound},
		{"timeout", &timeoutError{after: time.Second, err: errors.New("x")}, exitTimeout},
		{"krpc timeout", fmt.Errorf("q: %w", krpc.ErrTimeout), exitTimeout},
		{"no answer", fmt.Errorf("lookup: %w", node.ErrNoAnswer), exitTimeout},
		{"deadline", context.DeadlineExceeded, exitTimeout},
		{"krpc error", fmt.Errorf("q: %w", ke), exitRefused},
		{"remote error", krpcError("1.2.3.4:5", fmt.Errorf("q: %w", ke)), exitRefused},
		{"store refused", refusedBy(errors.New("put: no node stored it"), 2, map[int64]int{302: 2}), exitRefused},
		{"gateway 409", &gateway.StatusError{Status: 409, Msg: "seq not newer", Reason: "refused"}, exitRefused},
		{"gateway 502 refused", &gateway.StatusError{Status: 502, Msg: "no node stored it", Reason: "refused"}, exitRefused},
		{"gateway 502 no answer", &gateway.StatusError{Status: 502, Msg: "no node answered", Reason: "no_answer"}, exitTimeout},
		{"store partly silent", refusedBy(errors.New("put: no node stored it"), 3, map[int64]int{302: 2}), exitError},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
	var b bytes.Buffer
	report(&b, &remoteError{node: "1.2.3.4:5", code: 203, msg: "Protocol Error"})
	if got := b.String(); got != "dhtd: node 1.2.3.4:5 answered error 203: Protocol Error\n" {
		t.Errorf("report: %q", got)
	}
}
