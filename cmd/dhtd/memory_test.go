package main

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"64MiB", 64 << 20, true},
		{"1GiB", 1 << 30, true},
		{"512KiB", 512 << 10, true},
		{"1000B", 1000, true},
		{"4096", 4096, true},
		{"0", 0, false},
		{"-1MiB", 0, false},
		{"MiB", 0, false},
		{"12XB", 0, false},
		{"99999999999GiB", 0, false},
	} {
		got, err := parseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestRunRejectsBadMemoryLimit: a malformed --memory-limit stops `run`
// before any socket is opened.
func TestRunRejectsBadMemoryLimit(t *testing.T) {
	app := newApp()
	err := app.Run([]string{"dhtd", "run", "--no-bootstrap", "--storage", "memory", "--metrics-listen", "", "--listen", "127.0.0.1:0", "--memory-limit", "lots"})
	if err == nil || !strings.Contains(err.Error(), "--memory-limit") {
		t.Fatalf("err = %v, want a --memory-limit error", err)
	}
}
