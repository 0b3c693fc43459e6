package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func TestManPageSectionsAndFlags(t *testing.T) {
	app := newApp()
	man := manPage(app, 1)
	if !strings.HasPrefix(man, ".nh\n.TH dhtd 1\n") {
		t.Fatalf("man page does not start with .nh and .TH dhtd 1:\n%.200s", man)
	}
	for _, sec := range []string{".SH NAME\ndhtd \\- " + roffText(app.Usage) + "\n", ".SH SYNOPSIS\n", ".SH GLOBAL OPTIONS\n", ".SH COMMANDS\n"} {
		if !strings.Contains(man, sec) {
			t.Errorf("man page lacks %q", sec)
		}
	}
	paths := commandPaths(app.Commands, nil)
	if len(paths) < 20 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		head := ".SH "
		if len(p) > 1 {
			head = ".SS "
		}
		if !strings.Contains(man, "\n"+head+roffText(p[len(p)-1])) {
			t.Errorf("man page: no %s section for %q", head, strings.Join(p, " "))
		}
	}
	// Every flag of run, with its escaped name, usage and default.
	var run *cli.Command
	for _, c := range app.Commands {
		if c.Name == "run" {
			run = c
		}
	}
	if run == nil {
		t.Fatal("no run command")
	}
	for _, f := range run.VisibleFlags() {
		name := f.Names()[0]
		tag := `\fB` + roffText("--"+name) + `\fR`
		if !strings.Contains(man, ".TP\n"+tag) {
			t.Errorf("man page: run flag %q has no .TP %s paragraph", name, tag)
		}
	}
	if !strings.Contains(man, `(default: 50)`) {
		t.Error("man page: --gc-percent default 50 not shown")
	}
}

func TestRoffText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"--listen", `\-\-listen`},
		{`a\b`, `a\eb`},
		{".TH injected", `\&.TH injected`},
		{"'quote", `\&'quote`},
		{"two\nlines", "two lines"},
	} {
		if got := roffText(tc.in); got != tc.want {
			t.Errorf("roffText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := roffParagraphs("a\n.b\n\nc"), "a\n.br\n\\&.b\n.PP\nc"; got != want {
		t.Errorf("roffParagraphs = %q, want %q", got, want)
	}
}

// TestManPageGroffClean renders the page with groff, when installed, and
// fails on any warning (a macro misused, a line that roff would take for
// a request).
func TestManPageGroffClean(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, groff, "-man", "-ww", "-z")
	cmd.Stdin = strings.NewReader(manPage(newApp(), 1))
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("groff -man -ww -z: %v\n%s", err, out)
	}
}
