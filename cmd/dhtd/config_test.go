package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/urfave/cli/v2"
)

// runSettings is what `dhtd run` would run with.
type runSettings struct {
	rate      float64
	level     string
	bootstrap string
	storage   string
}

// runConfigOf parses args as `dhtd run` does (flags, environment,
// --config), without starting a node, and returns the settings the run
// action would see.
func runConfigOf(t *testing.T, args ...string) (runSettings, error) {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	var got runSettings
	app.Command("run").Action = func(c *cli.Context) error {
		got = runSettings{c.Float64("rate-limit"), c.String("log-level"), strings.Join(c.StringSlice("bootstrap"), ","), c.String("storage")}
		return nil
	}
	err := app.Run(append([]string{"dhtd", "run"}, args...))
	return got, err
}

// TestConfigPrecedence: a value comes from the command line, else the
// environment, else the config file (TOML or YAML), else the default.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "dhtd.toml")
	yml := filepath.Join(dir, "dhtd.yaml")
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(toml, "rate-limit = 7\nreply-budget = 1000\nsave-interval = \"1m\"\nlog-level = \"warn\"\nbootstrap = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n")
	write(yml, "rate-limit: 7.5\nlog-level: warn\nbootstrap: 127.0.0.1:1\n")

	cases := []struct {
		name string
		env  map[string]string
		args []string
		want runSettings
	}{
		{"defaults", nil, nil, runSettings{20, "info", "", "disk"}},
		{"toml file", nil, []string{"--config", toml}, runSettings{7, "warn", "127.0.0.1:1,127.0.0.1:2", "disk"}},
		{"yaml file", nil, []string{"--config", yml}, runSettings{7.5, "warn", "127.0.0.1:1", "disk"}},
		{"env over file", map[string]string{"DHTD_RATE_LIMIT": "8", "DHTD_BOOTSTRAP": "127.0.0.1:3"}, []string{"--config", toml},
			runSettings{8, "warn", "127.0.0.1:3", "disk"}},
		{"flag over env over file", map[string]string{"DHTD_RATE_LIMIT": "8", "DHTD_LOG_LEVEL": "error"},
			[]string{"--config", toml, "--rate-limit", "9", "--storage", "memory"}, runSettings{9, "error", "127.0.0.1:1,127.0.0.1:2", "memory"}},
		{"config from env", map[string]string{"DHTD_CONFIG": yml}, nil, runSettings{7.5, "warn", "127.0.0.1:1", "disk"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			got, err := runConfigOf(t, c.args...)
			if err != nil {
				t.Fatalf("dhtd run %q: %v", c.args, err)
			}
			if got != c.want {
				t.Errorf("dhtd run %q with %v: %+v, want %+v", c.args, c.env, got, c.want)
			}
		})
	}
}

// TestConfigErrors: a bad file is a usage error naming the file and the
// key; a value from the file is range-checked like a flag.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, file, body string
		code             int
		want             string
	}{
		{"unknown key", "a.toml", "rate_limt = 3\n", exitUsage, `unknown key "rate_limt"`},
		{"not toml", "b.toml", "rate-limit = = 3\n", exitUsage, "b.toml"},
		{"wrong type", "c.yaml", "rate-limit: fast\n", exitUsage, "rate-limit"},
		{"negative from file", "d.yaml", "rate-limit: -1\n", exitUsage, "--rate-limit -1"},
		{"unknown extension", "e.ini", "rate-limit = 3\n", exitUsage, ".toml, .yaml or .yml"},
		{"missing file", "", "", exitError, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "missing.toml")
			if c.file != "" {
				path = filepath.Join(dir, c.file)
				if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := runConfigOf(t, "--config", path)
			if code := exitCode(err); code != c.code || err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("config %q: error %v (exit %d), want exit %d mentioning %q", c.body, err, code, c.code, c.want)
			}
		})
	}
}

// TestSIGHUPReloadsConfig: SIGHUP makes a running node take the config
// file's new rate limit, log level and bootstrap list, without a restart;
// a broken file is logged and changes nothing; the node never exits on
// SIGHUP.
func TestSIGHUPReloadsConfig(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	live := startNode(t, "--no-bootstrap", "--storage", "memory")
	silent := silentUDP(t).LocalAddr().String()
	path := filepath.Join(t.TempDir(), "dhtd.toml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("rate-limit = 7\nlog-level = \"info\"\nbootstrap = [%q]\nstorage = \"memory\"\n", silent))
	m := startNode(t, "--config", path) // the file names the bootstrap node
	m.waitLine(`msg="bootstrap failed; retrying"`)

	write(fmt.Sprintf("rate-limit = 9\nlog-level = \"debug\"\nbootstrap = [%q]\nstorage = \"memory\"\n", live.Addr))
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	l := m.waitLine(`msg="config reloaded"`)
	for _, w := range []string{"rate_limit=9", "log_level=DEBUG", "bootstrap=" + live.Addr} {
		if !strings.Contains(l, w) {
			t.Errorf("reload line %q does not hold %s", l, w)
		}
	}
	m.waitLine(`msg="bootstrap done"`) // the new bootstrap list is used

	write("rate-limit = \"fast\"\n")
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m.waitLine(`msg="SIGHUP: config not reloaded; the settings stay as they were"`)
	if m.exited(0) {
		t.Fatalf("dhtd exited after SIGHUP: %v", m.cmd.ProcessState)
	}
	m.stop()
	if code := m.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("dhtd run exited %d on SIGTERM after the reloads, want 0", code)
	}
}
