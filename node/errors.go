package node

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors of the embedding API. The error of a lookup, a Get, a
// write (Put*, Announce) or a Ping wraps the one that says how it failed;
// match it with errors.Is. The message keeps the details (what was looked
// up, how many nodes were queried, who refused and why).
var (
	// ErrNotFound: a Get reached nodes, and none returned a valid item for
	// the target (BEP 44).
	ErrNotFound = errors.New("not found")
	// ErrNoNodes: a lookup had nobody to ask: the routing table is empty
	// and no bootstrap address is known.
	ErrNoNodes = errors.New("no nodes known")
	// ErrNoAnswer: nothing answered in time. A lookup none of whose
	// queried nodes answered, a write none of whose storers answered (and
	// none refused), a Ping that timed out: the DHT's timeout.
	ErrNoAnswer = errors.New("no node answered")
	// ErrRefused: the nodes answered with a KRPC error instead of doing
	// what was asked: every storer that answered a write refused it (the
	// error names each node, its code and message; the result lists them),
	// or the pinged node answered with an error.
	ErrRefused = errors.New("refused")
)

// kindError reads as err and matches kind as well as err's own chain: it
// adds a sentinel to an error without changing its message.
type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// withKind returns err, matching kind too (errors.Is); nil stays nil.
func withKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// errLookupTimeout is the cause a lookup's context is cancelled with when
// Config.LookupTimeout passes; it matches context.DeadlineExceeded.
var errLookupTimeout = fmt.Errorf("lookup timeout: %w", context.DeadlineExceeded)
