package main

// `--config FILE`: flag values from a TOML or YAML file, each key named as
// its flag, applied through urfave/cli's altsrc. A flag on the command line
// wins over its environment variable, which wins over the file.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// configMetadata is the key of the loaded configuration in App.Metadata.
const configMetadata = "dhtd.config"

// reloadable are the flags a SIGHUP takes again from the config file.
func reloadable() []string { return []string{"rate-limit", "reply-budget", "log-level", "bootstrap"} }

// loadedConfig is what a command that took values from --config keeps for
// a reload.
type loadedConfig struct {
	path     string
	flags    []cli.Flag
	explicit map[string]bool // set by flag or environment: the file does not apply
}

// daemonize gives `run` what a daemon needs: log flags and a config file.
func daemonize(run *cli.Command) {
	run.Flags = append(run.Flags, logFlags()...)
	withConfigFile(run)
}

// withConfigFile gives cmd a --config flag: every flag of cmd may be set
// in the file. It wraps cmd's flags in their altsrc kinds and loads the
// file before cmd's other Before steps, so that values from the file are
// checked like any other.
func withConfigFile(cmd *cli.Command) {
	for i, f := range cmd.Flags {
		cmd.Flags[i] = altFlag(f)
	}
	cmd.Flags = append(cmd.Flags, &cli.StringFlag{
		Name: "config", EnvVars: []string{"DHTD_CONFIG"},
		Usage: "read flag values from this TOML (.toml) or YAML (.yaml, .yml) file, each key named as its flag; " +
			"a flag or environment variable wins over it. SIGHUP reloads " + strings.Join(reloadable(), ", "),
	})
	name := "dhtd " + cmd.Name
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if path := c.String("config"); path != "" {
			explicit := make(map[string]bool)
			for _, f := range cmd.Flags {
				if n := f.Names()[0]; c.IsSet(n) {
					explicit[n] = true
				}
			}
			src, _, err := readConfig(name, path, cmd.Flags)
			if err != nil {
				return err
			}
			if err := altsrc.ApplyInputSourceValues(c, src, cmd.Flags); err != nil {
				return usageErrorf(name, "config %s: %w", path, err)
			}
			c.App.Metadata[configMetadata] = &loadedConfig{path: path, flags: cmd.Flags, explicit: explicit}
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
}

// altFlag is f as the altsrc flag of its kind, which can take its value
// from a file; kinds altsrc does not know stay as they are.
func altFlag(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.StringFlag:
		return altsrc.NewStringFlag(f)
	case *cli.StringSliceFlag:
		return altsrc.NewStringSliceFlag(f)
	case *cli.BoolFlag:
		return altsrc.NewBoolFlag(f)
	case *cli.IntFlag:
		return altsrc.NewIntFlag(f)
	case *cli.Int64Flag:
		return altsrc.NewInt64Flag(f)
	case *cli.UintFlag:
		return altsrc.NewUintFlag(f)
	case *cli.Float64Flag:
		return altsrc.NewFloat64Flag(f)
	case *cli.DurationFlag:
		return altsrc.NewDurationFlag(f)
	case *cli.PathFlag:
		return altsrc.NewPathFlag(f)
	}
	return f
}

// readConfig parses the config file at path (TOML or YAML by its
// extension) into an altsrc input source. A key that names no flag of the
// command, or a value of the wrong kind, is a usage error of cmd.
func readConfig(cmd, path string, flags []cli.Flag) (src *altsrc.MapInputSource, keys map[string]bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	raw := make(map[string]any)
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".toml":
		err = toml.Unmarshal(b, &raw)
	case ".yaml", ".yml":
		err = yaml.Unmarshal(b, &raw)
	default:
		return nil, nil, usageErrorf(cmd, "config %s: want a .toml, .yaml or .yml file", path)
	}
	if err != nil {
		return nil, nil, usageErrorf(cmd, "config %s: %w", path, err)
	}
	kinds := make(map[string]cli.Flag)
	for _, f := range flags {
		for _, n := range f.Names() {
			kinds[n] = f
		}
	}
	values := make(map[any]any, len(raw))
	keys = make(map[string]bool, len(raw))
	var unknown []string
	for k, v := range raw {
		f, ok := kinds[k]
		if !ok || k == "config" || k == "help" {
			unknown = append(unknown, k)
			continue
		}
		values[k] = normalize(f, v)
		keys[k] = true
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, nil, usageErrorf(cmd, "config %s: unknown key %q: keys are the flags of %s", path, unknown[0], cmd)
	}
	return altsrc.NewMapInputSource(path, values), keys, nil
}

// normalize makes a value from the file the type altsrc wants for flag f:
// a whole number for a float flag ("rate-limit = 20") becomes a float, a
// TOML integer (int64) for an int flag an int, a single string for a list
// flag a list of one, a number for a string flag its decimal text.
func normalize(f cli.Flag, v any) any {
	switch f.(type) {
	case *altsrc.Float64Flag:
		switch n := v.(type) {
		case int:
			return float64(n)
		case int64:
			return float64(n)
		}
	case *altsrc.IntFlag: // TOML integers are int64
		if n, ok := v.(int64); ok && n == int64(int(n)) {
			return int(n)
		}
	case *altsrc.StringSliceFlag:
		if s, ok := v.(string); ok {
			return []any{s}
		}
	case *altsrc.StringFlag, *altsrc.PathFlag:
		switch n := v.(type) {
		case int, int64, float64:
			return fmt.Sprint(n)
		}
	}
	return v
}
