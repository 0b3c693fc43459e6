package core

import (
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

func storageTarget(v []byte) krpc.ID { return storage.ImmutableTarget(v) }
