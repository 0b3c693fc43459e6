//go:build !unix

package storage

import (
	"os"
	"time"
)

// lockFile is a no-op where flock is missing; bbolt's own lock still
// guards the database once it is open.
func lockFile(*os.File, time.Duration) (bool, error) { return true, nil }
