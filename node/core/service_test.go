package core

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

// Answered lets a responder into the table, and tells the hooks, only
// for an answer that carries an id from a responder the node accepts.
func TestServiceAnswered(t *testing.T) {
	var self, peer krpc.ID
	self[0], peer[0] = 0x01, 0x80
	from := addr(2)
	said := krpc.CompactAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 7}), 6881))
	response := func(ro int64) *krpc.Msg {
		return &krpc.Msg{Y: krpc.KindResponse, R: &krpc.Return{ID: peer}, IP: &said, RO: ro}
	}
	for _, tc := range []struct {
		name   string
		m      *krpc.Msg
		refuse bool // Hooks.Accept refuses every id
		learns bool
	}{
		{"response", response(0), false, true},
		{"error answer", &krpc.Msg{Y: krpc.KindError, E: &krpc.Error{Code: 201}}, false, false},
		{"read-only responder", response(1), false, false},
		{"refused id", response(0), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Service{ID: self, K: 8, Table: routing.NewTable(self, routing.Config{})}
			var proved []netip.Addr
			var votes []krpc.CompactAddr
			s.Hooks.Proved = func(ip netip.Addr, _ time.Time) { proved = append(proved, ip) }
			s.Hooks.ExternalIP = func(_ netip.AddrPort, ip krpc.CompactAddr) { votes = append(votes, ip) }
			if tc.refuse {
				s.Hooks.Accept = func(krpc.ID, netip.Addr) bool { return false }
			}
			s.Answered(from, tc.m, t0, 0)
			_, inTable := s.Table.Get(peer)
			if inTable != tc.learns || (len(proved) == 1) != tc.learns || (len(votes) == 1) != tc.learns {
				t.Fatalf("in table %v, proved %v, votes %v: want learned %v", inTable, proved, votes, tc.learns)
			}
			if tc.learns && (proved[0] != from.Addr() || votes[0] != said) {
				t.Fatalf("proved %v, vote %v: want %v and %v", proved, votes, from.Addr(), said)
			}
		})
	}
}
