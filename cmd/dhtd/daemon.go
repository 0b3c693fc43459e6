package main

// What `dhtd run` does as a daemon besides running nodes: its log (level,
// format, file), SIGHUP (reopen the log, reload the config file's
// reloadable settings; never exit) and bootstrap retries that back off from
// seconds to minutes.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/node"
)

// Bootstrap retry backoff: the first retry after bootstrapRetryMin, each
// next one twice as late, at most bootstrapRetryMax.
const (
	bootstrapRetryMin = 2 * time.Second
	bootstrapRetryMax = 5 * time.Minute
)

// logFlags are `run`'s --log-format and --log-file (--log-level is in
// run.go).
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text (logfmt) or json", EnvVars: []string{"DHTD_LOG_FORMAT"}},
		&cli.StringFlag{Name: "log-file", Usage: "append the log to this file, reopened on SIGHUP (for logrotate)", DefaultText: "stderr", EnvVars: []string{"DHTD_LOG_FILE"}},
	}
}

// daemonLog is the daemon's logger, with the level a reload can change and
// the file a SIGHUP reopens.
type daemonLog struct {
	*slog.Logger
	level *slog.LevelVar
	file  *reopenFile // nil: stderr
}

// newDaemonLog builds the logger from --log-level, --log-format and
// --log-file.
func newDaemonLog(c *cli.Context) (*daemonLog, error) {
	d := &daemonLog{level: new(slog.LevelVar)}
	if err := d.level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageErrorf(cmdName(c), "--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	var w io.Writer = c.App.ErrWriter
	if path := c.String("log-file"); path != "" {
		f, err := openReopenFile(path)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %w", err)
		}
		d.file, w = f, f
	}
	opts := &slog.HandlerOptions{Level: d.level}
	switch f := c.String("log-format"); f {
	case "text":
		d.Logger = slog.New(slog.NewTextHandler(w, opts))
	case "json":
		opts.ReplaceAttr = jsonAttr
		d.Logger = slog.New(slog.NewJSONHandler(w, opts))
	default:
		return nil, usageErrorf(cmdName(c), "--log-format %q: want text or json", f)
	}
	return d, nil
}

// jsonAttr writes values the way the text log does: a duration as "2s",
// not nanoseconds; an id or address by its String method, not as an array
// of bytes.
func jsonAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindAny:
		if _, isErr := a.Value.Any().(error); !isErr {
			if s, ok := a.Value.Any().(fmt.Stringer); ok {
				a.Value = slog.StringValue(s.String())
			}
		}
	}
	return a
}

// reopenFile is a log file that can be reopened under its name, after
// logrotate has moved it away.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openReopenFile(path string) (*reopenFile, error) {
	r := &reopenFile{path: path}
	return r, r.reopen()
}

func (r *reopenFile) reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (r *reopenFile) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(b)
}

func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// booter bootstraps one node until it succeeds, backing off between
// failures, each logged; kick starts it again (a new bootstrap list).
type booter struct {
	n       *node.Node
	log     *slog.Logger
	running atomic.Bool
	kick    chan struct{}
	// afterFirst, if set, runs once after the first bootstrap attempt,
	// whatever its outcome (--pkarr-keep starts its rounds then).
	afterFirst func()
	firstOnce  sync.Once
}

func newBooter(n *node.Node, log *slog.Logger) *booter {
	return &booter{n: n, log: log, kick: make(chan struct{}, 1)}
}

// start runs the bootstrap loop if it is not running, else makes it retry
// at once.
func (b *booter) start(ctx context.Context) {
	if !b.running.CompareAndSwap(false, true) {
		select {
		case b.kick <- struct{}{}:
		default:
		}
		return
	}
	go func() {
		defer b.running.Store(false)
		wait := bootstrapRetryMin
		for attempt := 1; ; attempt++ {
			if len(b.n.Admin().BootstrapList()) == 0 {
				if b.afterFirst != nil && ctx.Err() == nil {
					b.firstOnce.Do(b.afterFirst)
				}
				return
			}
			err := b.n.Bootstrap(ctx)
			if b.afterFirst != nil && ctx.Err() == nil {
				b.firstOnce.Do(b.afterFirst)
			}
			if err == nil || ctx.Err() != nil {
				return
			}
			b.log.Warn("bootstrap failed; retrying", "addr", b.n.Addr(), "attempt", attempt, "retry_in", wait, "err", err)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				wait = min(2*wait, bootstrapRetryMax)
			case <-b.kick:
				t.Stop()
				wait = bootstrapRetryMin
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}()
}

// daemon is the state SIGHUP acts on.
type daemon struct {
	c       *cli.Context
	log     *daemonLog
	nodes   []*node.Node
	booters []*booter
	// The limits in force: a reload that changes one keeps the other.
	rate   float64 // packets per second per source; 0: off
	budget int     // reply bytes per second; 0: off
}

// hangup handles one SIGHUP: reopen the log file, then reload the config
// file's reloadable settings. A bad file is logged and changes nothing.
func (d *daemon) hangup(ctx context.Context) {
	if d.log.file != nil {
		if err := d.log.file.reopen(); err != nil {
			d.log.Error("SIGHUP: reopening the log file failed; logging to the old one", "err", err)
		}
	}
	lc, _ := d.c.App.Metadata[configMetadata].(*loadedConfig)
	if lc == nil {
		d.log.Info("SIGHUP: log reopened; no --config to reload")
		return
	}
	src, keys, err := readConfig(cmdName(d.c), lc.path, lc.flags)
	if err != nil {
		d.log.Error("SIGHUP: config not reloaded; the settings stay as they were", "err", err)
		return
	}
	take := func(name string) bool { return keys[name] && !lc.explicit[name] }
	rate, budget, level := d.rate, d.budget, d.log.level.Level()
	var boot []string
	if take("rate-limit") {
		if rate, err = src.Float64("rate-limit"); err == nil && (rate < 0 || math.IsNaN(rate) || math.IsInf(rate, 0)) {
			err = fmt.Errorf("rate-limit %v: want a number >= 0", rate)
		}
	}
	if err == nil && take("reply-budget") {
		if budget, err = src.Int("reply-budget"); err == nil && budget < 0 {
			err = fmt.Errorf("reply-budget %d: must not be negative", budget)
		}
	}
	if err == nil && take("log-level") {
		var s string
		if s, err = src.String("log-level"); err == nil {
			err = level.UnmarshalText([]byte(s))
		}
	}
	if err == nil && take("bootstrap") {
		if boot, err = src.StringSlice("bootstrap"); err == nil {
			err = checkBootstrapSyntax(cmdName(d.c), boot)
		}
	}
	if err != nil {
		d.log.Error("SIGHUP: config not reloaded; the settings stay as they were", "file", lc.path, "err", err)
		return
	}
	d.rate, d.budget = rate, budget
	d.log.level.Set(level)
	for i, n := range d.nodes {
		adm := n.Admin()
		adm.SetLimits(rate, 5*rate, budget)
		if take("bootstrap") && !slices.Equal(boot, adm.BootstrapList()) {
			adm.SetBootstrap(boot)
			d.booters[i].start(ctx)
		}
	}
	d.log.Info("config reloaded", "file", lc.path, "rate_limit", rate, "reply_budget", budget,
		"log_level", level.String(), "bootstrap", strings.Join(d.nodes[0].Admin().BootstrapList(), ","))
}

// wait runs until ctx ends, handling each SIGHUP from hup.
func (d *daemon) wait(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.hangup(ctx)
		}
	}
}
