package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// commandPaths lists every visible command as its path from the root,
// "probe ping" for a subcommand.
func commandPaths(cmds []*cli.Command, parent []string) [][]string {
	var out [][]string
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		p := append(append([]string(nil), parent...), c.Name)
		out = append(out, p)
		out = append(out, commandPaths(c.Subcommands, p)...)
	}
	return out
}

// TestGeneratedDocsListEveryCommand runs `make man completions` with the
// test's dhtd binary and checks that the man page and the fish script name
// every command and subcommand, and that the bash and zsh scripts ask the
// binary, whose completion answer lists every command at each level.
func TestGeneratedDocsListEveryCommand(t *testing.T) {
	bin := dhtdBinary(t) // skips under -short
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	t.Parallel()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-s", "-C", filepath.Join("..", ".."), "man", "completions",
		"DHTD="+bin, "MANPAGE="+filepath.Join(out, "dhtd.1"), "COMPLETIONS="+out)
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make man completions: %v\n%s", err, b)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	man, fish, bash, zsh := read("dhtd.1"), read("dhtd.fish"), read("dhtd.bash"), read("_dhtd")
	if !strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(man, ".nh")), ".TH dhtd 1") {
		t.Errorf("man page does not start with .TH dhtd 1:\n%.200s", man)
	}
	for _, s := range []struct{ name, script, hook string }{
		{"bash", bash, "-F _dhtd_bash_autocomplete dhtd"},
		{"zsh", zsh, "compdef _dhtd_zsh_autocomplete dhtd"},
	} {
		if !strings.Contains(s.script, "--generate-bash-completion") || !strings.Contains(s.script, s.hook) {
			t.Errorf("%s script does not ask dhtd --generate-bash-completion or lacks %q", s.name, s.hook)
		}
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		if b, err := exec.CommandContext(ctx, sh, "-n", filepath.Join(out, "dhtd.bash")).CombinedOutput(); err != nil {
			t.Errorf("bash -n dhtd.bash: %v\n%s", err, b)
		}
	}

	// What the binary answers the bash and zsh scripts, per level.
	answers := map[string]map[string]bool{}
	answer := func(parent []string) map[string]bool {
		key := strings.Join(parent, " ")
		if a, ok := answers[key]; ok {
			return a
		}
		cmd := exec.CommandContext(ctx, bin, append(append([]string(nil), parent...), "--generate-bash-completion")...)
		cmd.Env = hermeticEnv()
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("dhtd %s --generate-bash-completion: %v", key, err)
		}
		a := map[string]bool{}
		for _, w := range strings.Fields(string(b)) {
			a[w] = true
		}
		answers[key] = a
		return a
	}

	paths := commandPaths(newApp().Commands, nil)
	if len(paths) < 20 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, p := range paths {
		name := p[len(p)-1]
		head := ".SH " + name
		if len(p) > 1 {
			head = ".SS " + name
		}
		if !strings.Contains(man, "\n"+head+"\n") {
			t.Errorf("man page: no %q section for %q", head, strings.Join(p, " "))
		}
		if !strings.Contains(fish, fmt.Sprintf("-a '%s'", name)) {
			t.Errorf("fish completion: %q is not offered", strings.Join(p, " "))
		}
		if !answer(p[:len(p)-1])[name] {
			t.Errorf("dhtd %s --generate-bash-completion does not offer %q", strings.Join(p[:len(p)-1], " "), name)
		}
	}
}
