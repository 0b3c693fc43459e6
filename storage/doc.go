// Package storage holds what a DHT node stores for others: peers per infohash
// (BEP 5), BEP 44 items, and the write tokens that guard both.
//
// Everything here is passive: no goroutines, no timers and no global state.
// Time is passed in explicitly (a now time.Time argument), so expiry and
// token rotation happen lazily when the caller next touches the store, and
// tests can move the clock without sleeping. Counters are exposed through
// Stats methods that return plain structs for the metrics package to read.
package storage
