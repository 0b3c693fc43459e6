package main

// The CLI shell: what every command shares, set in one place so that a
// command added later gets it too. A bad flag value, a flag value out of
// range, a stray or missing argument and an unknown command are usage
// errors: one line on stderr, exit 2, and nothing sent.

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/dhtd/dhtd/node"
)

// finishApp completes the CLI definition of app: usage errors, argument
// counts and flag ranges for every command, `dhtd version` and --version.
func finishApp(app *cli.App) {
	app.HideVersion = true // our own --version prints the commit too
	app.Flags = append(app.Flags, &cli.BoolFlag{Name: "version", Usage: "print the version, commit and Go version"})
	app.Commands = append(app.Commands, versionCommand(), completionCommand(), manCommand())
	app.EnableBashCompletion = true // the bash and zsh scripts ask the binary
	if app.Description == "" {
		app.Description = "Exit status: 0 success, 1 error, 2 usage (bad flag value, stray argument, unknown command; " +
			"nothing was sent), 3 nothing found, 4 timed out, 5 refused by the remote (a KRPC error)."
	}
	// Errors are reported by main, which maps them to exit codes; the
	// library must not exit or print on its own.
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return &usageError{cmd: app.Name, err: flagError(err)}
	}
	app.Action = func(c *cli.Context) error {
		if c.Bool("version") {
			fmt.Fprintln(c.App.Writer, versionText())
			return nil
		}
		if c.NArg() > 0 {
			return usageErrorf(app.Name, "unknown command %q", c.Args().First())
		}
		return cli.ShowAppHelp(c)
	}
	for _, cmd := range app.Commands {
		finishCommand(cmd, app.Name)
	}
	// After finishCommand: the file is read before the flags are checked.
	if run := app.Command("run"); run != nil {
		daemonize(run)
	}
}

// finishCommand gives cmd (named parent + " " + cmd.Name) and its
// subcommands usage errors, and checks before its action that the
// arguments match its ArgsUsage and that no numeric flag is out of range.
func finishCommand(cmd *cli.Command, parent string) {
	name := parent + " " + cmd.Name
	cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return &usageError{cmd: name, err: flagError(err)}
	}
	if len(cmd.Subcommands) > 0 && cmd.Action == nil {
		cmd.Action = func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf(name, "unknown command %q", parent+" "+cmd.Name+" "+c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		}
	}
	for _, sub := range cmd.Subcommands {
		finishCommand(sub, name)
	}
	minArgs, maxArgs := argCounts(cmd.ArgsUsage)
	// Decided now: the library adds a "help" subcommand to every command.
	leaf := len(cmd.Subcommands) == 0
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if leaf {
			switch n := c.NArg(); {
			case n > maxArgs && maxArgs == 0:
				return usageErrorf(name, "unexpected argument %q: %s takes none", c.Args().Get(maxArgs), name)
			case n > maxArgs:
				return usageErrorf(name, "unexpected argument %q after %s", c.Args().Get(maxArgs), cmd.ArgsUsage)
			case n < minArgs:
				return usageErrorf(name, "missing argument: want %s", cmd.ArgsUsage)
			}
		}
		if err := checkFlagRanges(c, cmd.Flags); err != nil {
			return &usageError{cmd: name, err: err}
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
}

// argCounts reads the number of positional arguments from an ArgsUsage
// such as "ADDR TARGET", "[TARGET]" or "ADDR...": a word is one argument,
// a bracketed one optional, and "..." allows any number more.
func argCounts(usage string) (minArgs, maxArgs int) {
	usage, _, _ = strings.Cut(usage, "\n") // the first line names them
	for _, w := range strings.Fields(usage) {
		if strings.HasPrefix(w, "(") {
			break // an explanation, not an argument
		}
		if strings.HasSuffix(w, "...") || strings.HasSuffix(w, "...]") {
			return minArgs, math.MaxInt
		}
		if !strings.HasPrefix(w, "[") {
			minArgs++
		}
		maxArgs++
	}
	return minArgs, maxArgs
}

// checkFlagRanges refuses negative numbers and durations, non-finite
// floats, and a --timeout that is not positive: no flag of dhtd but a
// rawInt64Flag has a meaning for them, so they are mistakes to report
// before anything is sent.
func checkFlagRanges(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		name := f.Names()[0]
		switch a := f.(type) { // a flag that may come from --config
		case *altsrc.IntFlag:
			f = a.IntFlag
		case *altsrc.Int64Flag:
			f = a.Int64Flag
		case *altsrc.Float64Flag:
			f = a.Float64Flag
		case *altsrc.DurationFlag:
			f = a.DurationFlag
		}
		var neg bool
		var shown string
		switch f := f.(type) {
		case *cli.IntFlag:
			v := c.Int(name)
			neg, shown = v < 0, fmt.Sprint(v)
		case *cli.Int64Flag:
			v := c.Int64(name)
			neg, shown = v < 0, fmt.Sprint(v)
		case *cli.Float64Flag:
			v := c.Float64(name)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("--%s %v: want a finite number", name, v)
			}
			neg, shown = v < 0, fmt.Sprint(v)
		case *cli.DurationFlag:
			v := c.Duration(name)
			if name == "timeout" && v == 0 {
				return fmt.Errorf("--%s %v: must be positive", name, v)
			}
			neg, shown = v < 0, v.String()
		default:
			_ = f
			continue
		}
		if neg {
			return fmt.Errorf("--%s %s: must not be negative", name, shown)
		}
	}
	return nil
}

// rawInt64Flag is an Int64Flag that may be negative: the probe sends
// what it is told, so a node's answer to a bad value can be seen.
type rawInt64Flag struct{ *cli.Int64Flag }

// flagError rewords the flag package's parse errors in the command line's
// own spelling ("--timeout", not "-timeout").
func flagError(err error) error {
	s := err.Error()
	s = strings.Replace(s, "for flag -", "for --", 1)
	s = strings.Replace(s, "flag provided but not defined: -", "unknown flag --", 1)
	s = strings.Replace(s, "flag needs an argument: -", "flag needs a value: --", 1)
	if s == err.Error() {
		return err
	}
	return fmt.Errorf("%s", s)
}

// versionCommand is `dhtd version`.
func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit and Go version",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, versionText())
			return nil
		},
	}
}

// versionText is the version, the commit it was built from (from the
// build's VCS stamp) and the Go version, one per line.
func versionText() string {
	commit, goVersion, when, modified := "unknown", runtime.Version(), "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					when = " " + t.UTC().Format(time.RFC3339)
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("dhtd %s\ncommit %s%s\n%s %s/%s", node.Version, commit, when, goVersion, runtime.GOOS, runtime.GOARCH)
}
