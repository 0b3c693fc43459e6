package krpc

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// Server must stop its read loop and timers on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
