package cpuprofile

import (
	"os"
	"path/filepath"
	"testing"
)

// Start writes a non-empty profile to its file, profiles nothing for an
// empty path, and reports a file it cannot create.
func TestStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	stop, err := Start(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile file: %v, %v", fi, err)
	}
	stop, err = Start("")
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := Start(filepath.Join(t.TempDir(), "missing", "cpu.pprof")); err == nil {
		t.Fatal("no error for a file in a missing directory")
	}
}
