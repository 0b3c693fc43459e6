package krpc

// Metric labels. Every string this package passes to Events is one of the
// constants below, and each constant is listed in its set (PacketKinds,
// DropReasons, QueryOutcomes), so an owner can create one series per
// member and look them up without a miss. The sets are shared and must not
// be modified.

// Packet kinds: the kind passed to Events.Received and Events.Sent.
const (
	PacketQuery    = "query"    // a KRPC query ("y" = "q")
	PacketResponse = "response" // a KRPC response ("y" = "r")
	PacketError    = "error"    // a KRPC error ("y" = "e")
	PacketInvalid  = "invalid"  // a datagram that is not a valid KRPC message
)

// PacketKinds is every kind this package reports.
var PacketKinds = []string{PacketQuery, PacketResponse, PacketError, PacketInvalid}

// Drop reasons: the reason passed to Events.Dropped.
const (
	DropTooLarge    = "too_large"    // datagram above ServerConfig.MaxPacketSize
	DropTooSmall    = "too_small"    // datagram too short to be KRPC
	DropUndecodable = "undecodable"  // bencode or KRPC decoding failed, or no valid source
	DropRateLimited = "rate_limited" // ServerConfig.Accept refused it (the owner's per-source limit)
	DropReadOnly    = "read_only"    // the handler gave no reply (a read-only node, BEP 43)
	DropSendError   = "send_error"   // the socket refused to send
	DropBandwidth   = "bandwidth"    // ServerConfig.ReplyBudget is spent

	DropUnknownTransaction = "unknown_transaction" // a response for no pending transaction
	DropWrongAddress       = "wrong_address"       // a response from another address than the one queried
	DropLateResponse       = "late_response"       // a response after its transaction timed out
)

// DropReasons is every drop reason this package reports.
var DropReasons = []string{
	DropTooLarge, DropTooSmall, DropUndecodable, DropRateLimited, DropReadOnly,
	DropSendError, DropBandwidth, DropUnknownTransaction, DropWrongAddress, DropLateResponse,
}

// Query outcomes: the outcome passed to Events.QueryDone.
const (
	OutcomeAnswered  = "answered"   // a response arrived
	OutcomeError     = "error"      // a KRPC error arrived
	OutcomeTimeout   = "timeout"    // nothing arrived in time
	OutcomeCancelled = "cancelled"  // the caller gave up first
	OutcomeSendError = "send_error" // the query could not be sent
)

// QueryOutcomes is every query outcome this package reports.
var QueryOutcomes = []string{OutcomeAnswered, OutcomeError, OutcomeTimeout, OutcomeCancelled, OutcomeSendError}
