//go:build race

package node

// Simulation sizes under the race detector, which makes every packet ~10x
// dearer: a scaled-down network so `go test -race ./...` stays fast. The
// full size (sim_size_norace_test.go) runs without -race in `make test`.
const (
	simNodes = 200 // nodes of TestSimChurnSurvival and TestSimLookupLoss
	simItems = 40  // items put in TestSimChurnSurvival
)
