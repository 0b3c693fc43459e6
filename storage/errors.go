package storage

import (
	"errors"

	"github.com/dhtd/dhtd/krpc"
)

// Refusals of a BEP 44 put, by the rule it broke. Every put check
// (ValidatePutShape, VerifyPutSignature, ValidatePut, CheckValue) and
// ItemStore's Put, PutFrom and Restore return a *PutError matching one of
// them with errors.Is; a storing node maps each to its KRPC error code (BEP
// 44, Errors).
var (
	// ErrMalformed: an argument is missing or of the wrong shape, or v is
	// not exactly one canonical bencoded value (code 203).
	ErrMalformed = errors.New("storage: malformed put")
	// ErrBadToken: the write token is not one this node gave the sender
	// for the target (code 203).
	ErrBadToken = errors.New("storage: invalid token")
	// ErrValueTooBig: v is over MaxValueLen bytes (code 205).
	ErrValueTooBig = errors.New("storage: value too big")
	// ErrBadSignature: sig is not the key's signature of (salt, seq, v)
	// (code 206).
	ErrBadSignature = errors.New("storage: invalid signature")
	// ErrSaltTooBig: the salt is over MaxSaltLen bytes (code 207).
	ErrSaltTooBig = errors.New("storage: salt too big")
	// ErrCASMismatch: cas differs from the stored item's seq (code 301).
	ErrCASMismatch = errors.New("storage: cas mismatch")
	// ErrSeqTooLow: seq is below the stored one, or equal to it with
	// another v (code 302).
	ErrSeqTooLow = errors.New("storage: seq not above the stored one")
)

// PutError is a refused put: the rule it broke, the message a storing node
// answers with, and what caused it if the message does not say.
type PutError struct {
	Rule  error  // one of ErrMalformed ... ErrSeqTooLow
	Msg   string // the KRPC error message (BEP 44's own text for 205 to 302)
	Cause error  // the underlying error, if any (krpc.ErrNotCanonical ...)
}

// Error is the message, and the cause if there is one.
func (e *PutError) Error() string {
	if e.Cause != nil {
		return e.Msg + ": " + e.Cause.Error()
	}
	return e.Msg
}

// Code is the KRPC error code a storing node answers the refusal with
// (BEP 5 and BEP 44, Errors): 203 for a malformed put or a bad token, 205,
// 206, 207, 301 and 302 for the rules BEP 44 numbers.
func (e *PutError) Code() int64 {
	switch {
	case errors.Is(e.Rule, ErrValueTooBig):
		return krpc.ErrCodeValueTooBig
	case errors.Is(e.Rule, ErrBadSignature):
		return krpc.ErrCodeInvalidSig
	case errors.Is(e.Rule, ErrSaltTooBig):
		return krpc.ErrCodeSaltTooBig
	case errors.Is(e.Rule, ErrCASMismatch):
		return krpc.ErrCodeCASMismatch
	case errors.Is(e.Rule, ErrSeqTooLow):
		return krpc.ErrCodeSeqLessCurrent
	}
	return krpc.ErrCodeProtocol // ErrMalformed, ErrBadToken
}

// Unwrap makes errors.Is match the rule and the cause.
func (e *PutError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Rule, e.Cause}
	}
	return []error{e.Rule}
}

// refuse returns a *PutError.
func refuse(rule error, msg string) error { return &PutError{Rule: rule, Msg: msg} }
