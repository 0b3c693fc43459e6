//go:build !race

package node

// Simulation sizes without the race detector: the full size of the churn
// and loss simulations (1,000 nodes, 100 items). sim_size_race_test.go scales them down
// under -race; `make test` also runs the Sim tests at full size without
// -race.
const (
	simNodes = 1000 // nodes of TestSimChurnSurvival and TestSimLookupLoss
	simItems = 100  // items put in TestSimChurnSurvival
)
