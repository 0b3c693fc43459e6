package metrics

import (
	"strconv"

	"github.com/dhtd/dhtd/krpc"
)

// Every label value used by this package comes from one of the fixed sets
// below. Values that originate on the network (a query's method name, an
// error code) must go through MethodLabel or ErrorCodeLabel, which map
// anything unknown to Other, so a peer cannot create new series.
//
// The exported slices list each set in a stable order. They are shared and
// must not be modified.

// Other is the catch-all value for input outside a fixed set.
const Other = "other"

// PacketKinds is the fixed set of the kind label of the packet and byte
// counters: the kinds the transport reports (krpc.PacketKinds).
var PacketKinds = krpc.PacketKinds

// DropQueueFull is the drop reason of a ping the node skipped because all
// its ping slots were busy. The transport's reasons are krpc's (krpc.Drop*).
const DropQueueFull = "queue_full"

// DropAdmissionBusy is the drop reason of a confirmation ping of a new
// node for the routing table that the admission schedule had no room for.
const DropAdmissionBusy = "admission_busy"

// DropReasons is the fixed set of the reason label of PacketsDropped: the
// transport's reasons (krpc.DropReasons) and the node's own.
var DropReasons = append(append([]string(nil), krpc.DropReasons...), DropQueueFull, DropAdmissionBusy)

// KRPC query methods: the method label of QueriesReceived, QueriesSent and
// QueryRTT. Use MethodLabel to map a method name read from a packet.
const (
	MethodPing             = "ping"
	MethodFindNode         = "find_node"
	MethodGetPeers         = "get_peers"
	MethodAnnouncePeer     = "announce_peer"
	MethodGet              = "get"
	MethodPut              = "put"
	MethodSampleInfohashes = "sample_infohashes"
)

// Methods is the fixed set of the method label, Other included.
var Methods = []string{
	MethodPing, MethodFindNode, MethodGetPeers, MethodAnnouncePeer,
	MethodGet, MethodPut, MethodSampleInfohashes, Other,
}

// SentMethods is the fixed set of the method label of QueriesSent and
// QueryRTT: the node sends only the methods it knows, so Other never
// appears there.
var SentMethods = []string{
	MethodPing, MethodFindNode, MethodGetPeers, MethodAnnouncePeer,
	MethodGet, MethodPut, MethodSampleInfohashes,
}

// MethodLabel maps a KRPC method name, as read from the network, to a member
// of Methods. The match is exact and case-sensitive; anything else is Other.
func MethodLabel(q string) string {
	switch q {
	case MethodPing, MethodFindNode, MethodGetPeers, MethodAnnouncePeer,
		MethodGet, MethodPut, MethodSampleInfohashes:
		return q
	}
	return Other
}

// ErrorCodes is the fixed set of the code label of ErrorsSent: the KRPC
// error codes of BEP 5 (201-204) and BEP 44 (205-207, 301, 302), and Other.
var ErrorCodes = []string{"201", "202", "203", "204", "205", "206", "207", "301", "302", Other}

// ErrorCodeLabel maps a KRPC error code to a member of ErrorCodes.
func ErrorCodeLabel(code int64) string {
	switch code {
	case 201, 202, 203, 204, 205, 206, 207, 301, 302:
		return strconv.FormatInt(code, 10)
	}
	return Other
}

// QueryOutcomes is the fixed set of the outcome label of QueriesSent: the
// outcomes the transport reports (krpc.QueryOutcomes).
var QueryOutcomes = krpc.QueryOutcomes

// Lookup kinds: the kind label of Lookups, LookupDuration and LookupQueries.
// An announce runs a get_peers lookup and a put a get lookup, so they have
// no kind of their own.
const (
	LookupFindNode  = "find_node" // FindNode
	LookupGetPeers  = "get_peers" // GetPeers, Announce, SampleInfohashes
	LookupGet       = "get"       // Get, Put*
	LookupBootstrap = "bootstrap" // joining the network
	LookupRefresh   = "refresh"   // refreshing a stale bucket
)

// LookupKinds is the fixed set of the kind label of the lookup metrics.
var LookupKinds = []string{LookupFindNode, LookupGetPeers, LookupGet, LookupBootstrap, LookupRefresh}

// Lookup outcomes: the outcome label of Lookups.
const (
	LookupOK        = "ok"
	LookupFailed    = "failed"
	LookupCancelled = "cancelled"
)

// LookupOutcomes is the fixed set of the outcome label of Lookups.
var LookupOutcomes = []string{LookupOK, LookupFailed, LookupCancelled}

// Storage kinds: the kind label of StorageRejections.
const (
	StorePeer      = "peer"      // announce_peer
	StoreImmutable = "immutable" // BEP 44 immutable put
	StoreMutable   = "mutable"   // BEP 44 mutable put
)

// StorageKinds is the fixed set of the kind label of StorageRejections.
var StorageKinds = []string{StorePeer, StoreImmutable, StoreMutable}

// Rejection reasons: the reason label of StorageRejections.
const (
	RejectBadToken     = "bad_token"     // write token missing or invalid
	RejectMalformed    = "malformed"     // arguments missing or of the wrong shape
	RejectTooBig       = "too_big"       // value above 1000 bytes (BEP 44 code 205)
	RejectBadSignature = "bad_signature" // signature check failed (206)
	RejectSaltTooBig   = "salt_too_big"  // salt above 64 bytes (207)
	RejectCASMismatch  = "cas_mismatch"  // cas differs from the stored seq (301)
	RejectSeqTooLow    = "seq_too_low"   // seq below the stored seq (302)
	RejectFull         = "full"          // the store is at its bound and no source holds more than the sender's
	RejectQuota        = "quota"         // the sender's /24 (IPv6 /48) holds its share of the store
	RejectBusy         = "busy"          // too many writes waiting to be durable
	RejectDBError      = "db_error"      // the write to the on-disk store failed
)

// RejectReasons is the fixed set of the reason label of StorageRejections,
// by kind: only the refusals each kind of write can meet (an announce has
// no value, salt, signature or seq; an immutable put no salt, signature or
// seq, whose presence makes it malformed).
var RejectReasons = map[string][]string{
	StorePeer: {RejectBadToken, RejectMalformed, RejectFull, RejectQuota, RejectBusy, RejectDBError},
	StoreImmutable: {RejectBadToken, RejectMalformed, RejectTooBig, RejectFull, RejectQuota,
		RejectBusy, RejectDBError},
	StoreMutable: {RejectBadToken, RejectMalformed, RejectTooBig, RejectBadSignature, RejectSaltTooBig,
		RejectCASMismatch, RejectSeqTooLow, RejectFull, RejectQuota, RejectBusy, RejectDBError},
}

// Eviction reasons: the reason label of the storage_evictions_total counter.
const (
	// EvictOverShare: the store was at its bound and the entry was charged
	// to the source network holding the most, more than the writer's.
	EvictOverShare = "over_share"
	// EvictInfohashFull: an infohash held its most peers of one family and
	// replaced its oldest peer.
	EvictInfohashFull = "infohash_full"
	// EvictBytes: the peer store's byte budget was full and nothing could
	// be taken from another network, so an infohash replaced its own
	// oldest peer of the family.
	EvictBytes = "bytes"
)

// EvictReasons is the fixed set of the reason label of evictions.
var EvictReasons = []string{EvictOverShare, EvictInfohashFull, EvictBytes}
