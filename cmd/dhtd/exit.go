package main

// Exit codes, in the manner of dig: a script can tell a usage mistake from
// an empty answer, a silent network and a node that said no. Commands
// return errors; exitCode is the one place that turns them into a status.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// The exit statuses of dhtd (README.md, "Exit codes").
const (
	exitOK       = 0 // success
	exitError    = 1 // any other error
	exitUsage    = 2 // bad flag value, stray argument, unknown command
	exitNotFound = 3 // the lookup ran but found nothing
	exitTimeout  = 4 // no answer in time
	exitRefused  = 5 // a node answered with a KRPC error
)

// errNothingFound marks a lookup that ran to its end and found nothing:
// no peers, no item, no samples.
var errNothingFound = errors.New("nothing found")

// usageError is a mistake on the command line: a bad flag value, a stray
// or missing argument, an unknown command. Nothing was sent.
type usageError struct {
	cmd string // the full command name, "dhtd probe ping", for the hint
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf is a usageError of the command c runs.
func usageErrorf(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// timeoutError is a command that ran out of time: --timeout, or every
// node it asked stayed silent.
type timeoutError struct {
	after time.Duration // the bound that ran out (0: the per-query timeout)
	err   error
}

func (e *timeoutError) Error() string {
	if e.after > 0 {
		return fmt.Sprintf("timed out after %v: %v", e.after, e.err)
	}
	return "timed out: " + e.err.Error()
}
func (e *timeoutError) Unwrap() error { return e.err }

// remoteError is a refusal by the network: a KRPC error answer from one
// node, or, for a store to many, the error answers that every node gave.
type remoteError struct {
	node  string // address of the node that answered; "" for a summary
	code  int64
	msg   string // the node's message, or a summary of the answers
	cause error
}

func (e *remoteError) Error() string {
	if e.node == "" {
		return e.msg
	}
	return fmt.Sprintf("node %s answered error %d: %s", e.node, e.code, e.msg)
}
func (e *remoteError) Unwrap() error { return e.cause }

// krpcError makes a KRPC error answer from addr a remoteError; other
// errors are returned as they are.
func krpcError(addr string, err error) error {
	var ke *krpc.Error
	if !errors.As(err, &ke) {
		return err
	}
	return &remoteError{node: addr, code: ke.Code, msg: ke.Msg, cause: err}
}

// refusedBy makes err a remoteError when every one of the sent store
// queries (announce_peer, put) was answered with a KRPC error; codes
// counts them by code.
func refusedBy(err error, sent int, codes map[int64]int) error {
	if err == nil || sent == 0 {
		return err
	}
	total, parts := 0, []string(nil)
	var first int64
	for code, k := range codes {
		total += k
		if first == 0 || code < first {
			first = code
		}
		parts = append(parts, fmt.Sprintf("error %d from %d", code, k))
	}
	if total < sent {
		return err
	}
	sort.Strings(parts)
	return &remoteError{code: first, msg: fmt.Sprintf("%v: refused (%s)", err, strings.Join(parts, ", ")),
		cause: err}
}

// jsonError is the "error" member of every --json answer: the message,
// and for a KRPC error its code and the node that sent it.
type jsonError struct {
	Code    int64  `json:"code,omitempty"`
	Message string `json:"message"`
	Node    string `json:"node,omitempty"`
}

// errorJSON is err as a jsonError (nil for nil).
func errorJSON(err error) *jsonError {
	if err == nil {
		return nil
	}
	out := &jsonError{Message: err.Error()}
	var re *remoteError
	if errors.As(err, &re) {
		out.Code, out.Node = re.code, re.node
	}
	return out
}

// exitCode maps an error returned by a command to the exit status.
func exitCode(err error) int {
	var ue *usageError
	var ke *krpc.Error
	var te *timeoutError
	var re *remoteError
	var ec cli.ExitCoder // urfave/cli's own: "No help topic for ..."
	var ge *gateway.StatusError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ec):
		return exitUsage
	case errors.As(err, &te), errors.Is(err, krpc.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, node.ErrNoAnswer):
		return exitTimeout
	case errors.As(err, &ke), errors.As(err, &re):
		return exitRefused
	case errors.As(err, &ge) && (ge.Status == http.StatusConflict || ge.Status == http.StatusPreconditionFailed || ge.Reason == gateway.ReasonRefused):
		return exitRefused // the gateway's storers refused the write
	case errors.Is(err, errNothingFound), errors.Is(err, node.ErrNotFound):
		return exitNotFound
	}
	return exitError
}

// report writes err to w as one line: "dhtd: cause", and for a usage error
// the help to read.
func report(w io.Writer, err error) {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd != "" {
		msg += " (see " + ue.cmd + " --help)"
	}
	fmt.Fprintln(w, "dhtd: "+msg)
}
