package node

import "errors"

// Errors a lookup can end with, matched with errors.Is.
var (
	// ErrNotFound: the lookup ran to its end and no node returned the item.
	ErrNotFound = errors.New("not found")
	// ErrNoAnswer: the lookup queried nodes and none of them answered.
	ErrNoAnswer = errors.New("no node answered")
	// ErrNoNodes: the lookup had nobody to ask, neither a node in the
	// routing table nor a bootstrap address.
	ErrNoNodes = errors.New("no nodes known and no bootstrap addresses")
)
