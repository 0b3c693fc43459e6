package krpc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestLabelConstantsListed: every label constant of the package (Packet*,
// Drop*, Outcome*) is a member of its fixed set, and every member is one of
// them, so a constant added without listing it fails here rather than as a
// missing series.
func TestLabelConstantsListed(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]map[string]bool{"Packet": {}, "Drop": {}, "Outcome": {}}
	for _, fn := range names {
		if strings.HasSuffix(fn, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, fn, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					for prefix, set := range consts {
						if strings.HasPrefix(name.Name, prefix) {
							set[v] = true
						}
					}
				}
			}
		}
	}
	for _, c := range []struct {
		prefix string
		set    []string
	}{{"Packet", PacketKinds}, {"Drop", DropReasons}, {"Outcome", QueryOutcomes}} {
		if len(consts[c.prefix]) == 0 {
			t.Fatalf("no %s* string constants found: the test no longer sees the source", c.prefix)
		}
		for v := range consts[c.prefix] {
			if !slices.Contains(c.set, v) {
				t.Errorf("%s* constant %q is not in its set %v", c.prefix, v, c.set)
			}
		}
		for _, v := range c.set {
			if !consts[c.prefix][v] {
				t.Errorf("set member %q is no %s* constant", v, c.prefix)
			}
		}
	}
}
