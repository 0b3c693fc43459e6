package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// TestPutKeep runs `dhtd put --keep` in process against two loopback
// nodes: the item is stored, the command keeps running (republishing)
// until SIGTERM, and then exits cleanly.
func TestPutKeep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nodes []*node.Node
	for i := range 2 {
		cfg := node.LoopbackConfig()
		if i > 0 {
			cfg.Bootstrap = []string{nodes[0].Addr().String()}
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	if err := nodes[1].Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}

	target := storage.ImmutableTarget([]byte("4:kept"))
	runKeep(t, ctx, "put --keep", []string{"dhtd", "put", "--keep", "--bootstrap", nodes[0].Addr().String(), "--listen", "127.0.0.1:0", "--timeout", "10s", "kept"}, func(stdout string, _ func(string) string) {
		if !strings.Contains(stdout, target.String()) {
			t.Fatalf("stdout %q does not name the target %s", stdout, target)
		}
		if gr, err := nodes[1].Get(ctx, target, node.GetOptions{}); err != nil || string(gr.Item.V) != "4:kept" {
			t.Fatalf("get the kept item: %v %q", err, gr.Item.V)
		}
	})
	// With a short interval each round says what it did: with two nodes
	// there are never enough copies to skip (BEP 44), so it puts again.
	runKeep(t, ctx, "put --keep --republish-every 1s", []string{"dhtd", "put", "--keep", "--republish-every", "1s", "--bootstrap", nodes[0].Addr().String(), "--listen", "127.0.0.1:0", "--timeout", "10s", "kept"}, func(_ string, next func(string) string) {
		for range 2 {
			if l := next("republished "); l != "republished "+target.String()+": put" {
				t.Errorf("round line %q, want %q", l, "republished "+target.String()+": put")
			}
		}
	})
}

// TestPutKeepRepublishEvery: --republish-every needs --keep and a value
// from 1s to 1h; nothing is sent otherwise.
func TestPutKeepRepublishEvery(t *testing.T) {
	for _, args := range [][]string{
		{"put", "--republish-every", "1m", "--no-bootstrap", "x"},
		{"put", "--keep", "--republish-every", "2h", "--no-bootstrap", "x"},
		{"put", "--keep", "--republish-every", "10ms", "--no-bootstrap", "x"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := runApp(ctx, args...)
		cancel()
		if code := exitCode(err); code != exitUsage || err == nil || !strings.Contains(err.Error(), "--republish-every") {
			t.Errorf("dhtd %q: exit %d, %v; want %d naming the flag", args, code, err, exitUsage)
		}
	}
}

// runKeep runs a keeping command (args, named what) in process: once it
// says it is keeping, check sees its stdout; then SIGTERM must stop it
// cleanly.
func runKeep(t *testing.T, ctx context.Context, what string, args []string, check func(stdout string, next func(want string) string)) {
	t.Helper()
	app := newApp()
	var stdout bytes.Buffer
	errR, errW := io.Pipe()
	app.Writer, app.ErrWriter = &stdout, errW
	lines := make(chan string, 10)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, args)
		errW.Close()
	}()
	// next waits for a stderr line holding want. Lines end when the
	// command returns (its stderr is closed then), so every line it wrote
	// is seen before that is reported.
	next := func(want string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					var err error
					select {
					case err = <-done:
						done <- err // for the caller's own check
					default:
					}
					t.Fatalf("%s returned before %q: %v (stdout %q)", what, want, err, stdout.String())
				}
				if strings.Contains(l, want) {
					return l
				}
			case <-ctx.Done():
				t.Fatalf("no %q on stderr", want)
			}
		}
	}
	// The signal handler is installed before this line is written.
	next("keeping ")
	check(stdout.String(), next)
	select {
	case err := <-done:
		t.Fatalf("%s exited without a signal: %v", what, err)
	default:
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("stopped keeping ")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s after SIGTERM: %v", what, err)
		}
	case <-ctx.Done():
		t.Fatalf("%s did not exit after SIGTERM", what)
	}
}

// TestPutKeepRefusesGateway: --keep needs a node of its own.
func TestPutKeepRefusesGateway(t *testing.T) {
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run([]string{"dhtd", "put", "--keep", "--gateway", "127.0.0.1:1", "x"})
	if err == nil || !strings.Contains(err.Error(), "--gateway") {
		t.Fatalf("put --keep --gateway: %v, want a refusal naming --gateway", err)
	}
}
