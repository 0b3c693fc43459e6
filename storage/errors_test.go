package storage

import (
	"errors"
	"strings"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// wireError is the KRPC error BEP 44 (Errors) gives each refusal of a put,
// as a storing node answers it; nil for nil, and nil for an error that is
// not a *PutError.
func wireError(err error) *krpc.Error {
	var pe *PutError
	if !errors.As(err, &pe) {
		return nil
	}
	codes := []struct {
		rule error
		code int64
	}{
		{ErrMalformed, 203}, {ErrBadToken, 203}, {ErrValueTooBig, 205}, {ErrBadSignature, 206},
		{ErrSaltTooBig, 207}, {ErrCASMismatch, 301}, {ErrSeqTooLow, 302},
	}
	for _, c := range codes {
		if errors.Is(pe.Rule, c.rule) {
			return &krpc.Error{Code: c.code, Msg: pe.Msg}
		}
	}
	return nil
}

// TestCheckValue: the one value check refuses what a storing node refuses,
// each with its rule, and keeps the cause.
func TestCheckValue(t *testing.T) {
	largest := "996:" + strings.Repeat("x", 996) // 1000 bytes
	tooBig := "997:" + strings.Repeat("x", 997)  // 1001 bytes
	if len(largest) != MaxValueLen || len(tooBig) != MaxValueLen+1 {
		t.Fatal("test values of the wrong size")
	}
	tests := []struct {
		name string
		v    string
		want error // nil: accepted
	}{
		{"string", "5:hello", nil},
		{"largest", largest, nil},
		{"too big", tooBig, ErrValueTooBig},
		{"empty", "", ErrMalformed},
		{"not canonical", "d1:b0:1:a0:e", ErrMalformed},
		{"trailing bytes", "i1ei2e", ErrMalformed},
		{"not canonical and too big", tooBig + "x", ErrMalformed},
	}
	for _, tc := range tests {
		err := CheckValue([]byte(tc.v))
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var pe *PutError
		if !errors.Is(err, tc.want) || !errors.As(err, &pe) {
			t.Errorf("%s: %v, want a *PutError matching %v", tc.name, err, tc.want)
		}
		if tc.want == ErrMalformed && len(tc.v) > 0 && !errors.Is(err, krpc.ErrNotCanonical) {
			t.Errorf("%s: %v does not keep ErrNotCanonical as its cause", tc.name, err)
		}
	}
}
