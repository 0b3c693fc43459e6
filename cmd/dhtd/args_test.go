package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestInterspersed: flags after positional arguments move in front of
// them, with their values; boolean flags take no value; "--" ends flag
// handling; argv that names no leaf command is left alone.
func TestInterspersed(t *testing.T) {
	leafFlags := []cli.Flag{
		&cli.BoolFlag{Name: "json", Aliases: []string{"j"}},
		&cli.DurationFlag{Name: "timeout"},
		&cli.StringFlag{Name: "salt"},
	}
	app := &cli.App{Commands: []*cli.Command{
		{Name: "get", Aliases: []string{"g"}, Flags: leafFlags},
		{Name: "probe", Subcommands: []*cli.Command{{Name: "ping", Flags: leafFlags}}},
	}}
	tests := []struct {
		in, want string
	}{
		{"dhtd", "dhtd"},
		{"dhtd --help", "dhtd --help"},
		{"dhtd nope X --json", "dhtd nope X --json"},
		{"dhtd probe X --json", "dhtd probe X --json"}, // not a leaf
		{"dhtd get", "dhtd get"},
		{"dhtd get T", "dhtd get -- T"},
		{"dhtd get T --json", "dhtd get --json -- T"},
		{"dhtd g T -j", "dhtd g -j -- T"},
		{"dhtd get T --timeout 5s", "dhtd get --timeout 5s -- T"},
		{"dhtd get T --timeout=5s U", "dhtd get --timeout=5s -- T U"},
		{"dhtd get --json T", "dhtd get --json -- T"}, // a bool flag takes no value
		{"dhtd get --salt -x T", "dhtd get --salt -x -- T"},
		{"dhtd get T --timeout", "dhtd get --timeout -- T"}, // a missing value is left to urfave/cli
		{"dhtd get T -h", "dhtd get -h -- T"},
		{"dhtd get --json -- -x --timeout", "dhtd get --json -- -x --timeout"},
		{"dhtd get - --json", "dhtd get --json -- -"}, // "-" is a positional argument
		{"dhtd probe ping ADDR --json --timeout 1s", "dhtd probe ping --json --timeout 1s -- ADDR"},
	}
	for _, tc := range tests {
		got := interspersed(app, strings.Fields(tc.in))
		if want := strings.Fields(tc.want); !slices.Equal(got, want) {
			t.Errorf("interspersed(%q) = %q, want %q", tc.in, got, want)
		}
	}
}

// TestInterspersedParses: what interspersed returns is what urfave/cli
// parses as the user meant: the flags set and the positional arguments in
// order.
func TestInterspersedParses(t *testing.T) {
	var gotJSON bool
	var gotSalt string
	var gotArgs []string
	app := &cli.App{Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{{
		Name:  "get",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}, &cli.StringFlag{Name: "salt"}},
		Action: func(c *cli.Context) error {
			gotJSON, gotSalt, gotArgs = c.Bool("json"), c.String("salt"), c.Args().Slice()
			return nil
		},
	}}}
	args := interspersed(app, []string{"dhtd", "get", "T", "--json", "U", "--salt", "s"})
	if err := app.Run(args); err != nil {
		t.Fatalf("run %q: %v", args, err)
	}
	if !gotJSON || gotSalt != "s" || !slices.Equal(gotArgs, []string{"T", "U"}) {
		t.Errorf("parsed json=%v salt=%q args=%q, want true, \"s\", [T U]", gotJSON, gotSalt, gotArgs)
	}
}
