package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dhtd/dhtd/node"
)

// TestStatusErrorUnwrap: every reason the gateway sends maps back
// to its error; an answer without one (the gateway's own refusals) matches
// none.
func TestStatusErrorUnwrap(t *testing.T) {
	tests := []struct {
		body string
		want error
	}{
		{`{"error":"get x: not found","status":404,"reason":"not_found"}`, node.ErrNotFound},
		{`{"error":"x","status":502,"reason":"no_nodes"}`, node.ErrNoNodes},
		{`{"error":"x","status":502,"reason":"no_answer"}`, node.ErrNoAnswer},
		{`{"error":"x","status":502,"reason":"refused"}`, node.ErrRefused},
		{`{"error":"x","status":409,"reason":"refused"}`, node.ErrRefused},
		{`{"error":"x","status":504,"reason":"timeout"}`, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		err := error(statusError(502, []byte(tc.body)))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v does not match %v", tc.body, err, tc.want)
		}
	}
	err := error(statusError(400, []byte(`{"error":"target: not hex","status":400}`)))
	for _, s := range []error{node.ErrNotFound, node.ErrNoNodes, node.ErrNoAnswer, node.ErrRefused, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			t.Errorf("a 400 without a reason matches %v", s)
		}
	}
	if !strings.Contains(err.Error(), "target: not hex") {
		t.Errorf("message %q lost the gateway's error", err)
	}
	if err := error(statusError(404, []byte(`not json`))); !errors.Is(err, node.ErrNotFound) || !strings.Contains(err.Error(), "not json") {
		t.Errorf("a 404 without a reason: %v, want it to match %v and keep the body", err, node.ErrNotFound)
	}
}
