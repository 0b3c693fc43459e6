package node

import (
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// StoredItem returns the BEP 44 item this node itself stores for target
// (as one of the storers others put to), if it holds an unexpired one.
// A lookup through the network never asks the node that runs it, so a
// caller that serves items (the gateway) checks here as well.
func (a *Admin) StoredItem(target krpc.ID) (storage.Item, bool) {
	return a.n.items.Get(target, a.n.clock.Now())
}
