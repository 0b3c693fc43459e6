package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReadmeLayoutMatchesTree checks that the README's "Layout" table names
// every Go package of the repository, and nothing that is not one.
func TestReadmeLayoutMatchesTree(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal(`README.md has no "## Layout" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		listed[m[1]] = true
	}

	var pkgs []string
	walkGoFiles(t, root, func(path, rel string) {
		if !strings.HasSuffix(path, "_test.go") && rel != "." && !slices.Contains(pkgs, rel) {
			pkgs = append(pkgs, rel)
		}
	})
	if len(pkgs) < 8 {
		t.Fatalf("found only %d packages under %s: %v", len(pkgs), root, pkgs)
	}
	for _, p := range pkgs {
		if !listed[p] {
			t.Errorf("package %s is not in the README's Layout table", p)
		}
	}
	for name := range listed {
		if st, err := os.Stat(filepath.Join(root, name)); err != nil || !st.IsDir() {
			t.Errorf("the Layout table names %s, which is not a directory", name)
		}
	}
}

// TestMakeFuzzRunsEveryTarget checks that the Makefile's FUZZ_TARGETS,
// what `make fuzz` (and so `make test`) runs, lists every fuzz target of
// the repository, and nothing that is not one.
func TestMakeFuzzRunsEveryTarget(t *testing.T) {
	root := filepath.Join("..", "..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FUZZ_TARGETS \?= (.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no FUZZ_TARGETS line")
	}
	listed := strings.Fields(string(m[1]))
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	var found []string
	walkGoFiles(t, root, func(path, rel string) {
		if !strings.HasSuffix(path, "_test.go") {
			return
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fuzzFunc.FindAllSubmatch(src, -1) {
			found = append(found, "./"+rel+":"+string(f[1]))
		}
	})
	for _, f := range found {
		if !slices.Contains(listed, f) {
			t.Errorf("fuzz target %s is not in the Makefile's FUZZ_TARGETS", f)
		}
	}
	for _, l := range listed {
		if !slices.Contains(found, l) {
			t.Errorf("FUZZ_TARGETS names %s, which is not a fuzz target", l)
		}
	}
	if len(found) == 0 {
		t.Error("no fuzz target found")
	}
}

// walkGoFiles calls fn with every .go file of the repository at root and
// its directory relative to root (slash-separated), leaving out hidden
// directories, testdata and node_modules.
func walkGoFiles(t *testing.T, root string, fn func(path, rel string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			fn(path, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
