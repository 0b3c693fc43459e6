package node

// State on disk (Config.DataDir): the node id, the routing table and the
// peers and BEP 44 items stored for others live in a bbolt database
// (storage.DB), so that a restarted node keeps its identity, rejoins
// through the nodes it knew and still serves what it acknowledged.
//
// Durable acknowledgements. The krpc read loop is one goroutine that calls
// the query handler for every packet in turn, so a handler that waited for
// a disk write (an fdatasync, a millisecond or more) would stall every other
// query behind it and make all puts pay their fsync one after another. A
// put or announce_peer is therefore applied to the in-memory store on the
// read loop, then handed to a goroutine that writes it through the DB and
// only then sends the answer with Server.Reply; the handler returns
// krpc.Deferred. Those goroutines call DB.PutItem/PutPeer concurrently,
// and bbolt's Batch folds concurrent writes into one commit, so under load
// the puts share their fsyncs. Their number is bounded by
// Config.MaxPendingWrites (gauge dhtd_db_writes_in_flight); past it, a
// write is refused with 202 "server busy" (dhtd_storage_rejections_total
// {reason="busy"}) instead of queueing without bound.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/storage"
)

// DBFileName is the name of the database file inside Config.DataDir.
const DBFileName = "dhtd.db"

// Persistence tuning.
const (
	// deleteQueueLen bounds the evictions waiting to be deleted from the DB;
	// more are dropped and counted (dhtd_db_deletes_dropped_total), their
	// records then go at expiry, or are evicted again by the bounds when
	// loaded at the next start.
	deleteQueueLen = 1024
	// deleteBatch is the most evictions applied in one DB call.
	deleteBatch = 256
	// rejoinParallel bounds the pings to saved nodes in flight at start.
	rejoinParallel = 16
)

// dbDelete is one eviction to mirror in the DB: an item (item set) or a
// peer or whole infohash (peer set).
type dbDelete struct {
	item   *krpc.ID
	peer   storage.PeerKey
	isPeer bool
}

// durableWrite is the write a put or announce_peer handler wants done
// before its reply is sent; see pendingWrite.
type durableWrite struct {
	kind  string // metrics storage kind
	write func() error
}

// openDB creates dir (mode 0700) if needed and opens the database in it.
func openDB(dir string) (*storage.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	db, err := storage.OpenDB(filepath.Join(dir, DBFileName))
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	return db, nil
}

// chooseID returns the node id: cfg.ID if set (saved for the next start),
// else the saved one, else a new random one (saved).
func chooseID(cfg *Config, db *storage.DB) (krpc.ID, error) {
	if db == nil {
		if cfg.ID.IsZero() {
			return krpc.RandomID(), nil
		}
		return cfg.ID, nil
	}
	saved, ok, err := db.NodeID()
	if err != nil {
		return krpc.ID{}, err
	}
	id := cfg.ID
	switch {
	case !id.IsZero():
	case ok:
		return saved, nil
	default:
		id = krpc.RandomID()
	}
	if !ok || saved != id {
		if err := db.SetNodeID(id); err != nil {
			return krpc.ID{}, err
		}
	}
	return id, nil
}

// restoreStores loads the saved peers and items into the in-memory stores
// (expired ones are skipped), deletes from the DB what the stores' bounds
// evicted while loading, then wires the stores' eviction hooks to the
// delete queue. It returns the saved routing table nodes.
func (n *Node) restoreStores() ([]krpc.NodeInfo, error) {
	now := n.clock.Now()
	var (
		deadItems []krpc.ID
		deadPeers []storage.PeerKey
	)
	n.items.SetOnRemove(func(t krpc.ID) { deadItems = append(deadItems, t) })
	n.peers.SetOnRemove(func(ih krpc.ID, a netip.AddrPort) {
		deadPeers = append(deadPeers, storage.PeerKey{IH: ih, Addr: a})
	})
	var loaded []struct {
		it  storage.Item
		exp time.Time
	}
	// LoadItems' callback must not call the DB, so collect first.
	err := n.db.LoadItems(func(it storage.Item, exp time.Time) {
		loaded = append(loaded, struct {
			it  storage.Item
			exp time.Time
		}{it, exp})
	})
	if err != nil {
		return nil, err
	}
	var items int
	for _, l := range loaded {
		if err := n.items.Restore(l.it, l.exp, now); err != nil {
			n.log.Warn("saved item not restored", "target", l.it.Target(), "err", err)
			continue
		}
		items++
	}
	var peers int
	err = n.db.LoadPeers(func(ih krpc.ID, addr netip.AddrPort, seed bool, exp time.Time) {
		n.peers.Restore(ih, addr, seed, exp, now)
		peers++
	})
	if err != nil {
		return nil, err
	}
	if err := n.db.DeleteItems(deadItems); err != nil {
		return nil, err
	}
	if err := n.db.DeletePeers(deadPeers); err != nil {
		return nil, err
	}
	nodes, err := n.db.Nodes()
	if err != nil {
		return nil, err
	}
	n.items.SetOnRemove(func(t krpc.ID) { n.queueDelete(dbDelete{item: &t}) })
	n.peers.SetOnRemove(func(ih krpc.ID, a netip.AddrPort) {
		n.queueDelete(dbDelete{peer: storage.PeerKey{IH: ih, Addr: a}, isPeer: true})
	})
	st := n.items.Stats()
	n.log.Info("state loaded", "dir", filepath.Dir(n.db.Path()), "items", st.Immutable+st.Mutable,
		"peers", n.peers.Stats().Peers, "records_read", items+peers, "nodes", len(nodes),
		"corrupt_skipped", n.db.Stats().Corrupt)
	return nodes, nil
}

// queueDelete queues an eviction for the deleter without blocking (the
// store hooks run on the read loop).
func (n *Node) queueDelete(d dbDelete) {
	select {
	case n.dbDeletes <- d:
	default:
		n.metrics.DBDeletesDropped.Inc()
	}
}

// deleter applies queued evictions to the DB, a batch at a time, until the
// node closes (Close applies what is left).
func (n *Node) deleter() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case d := <-n.dbDeletes:
			n.applyDeletes(d)
		}
	}
}

// applyDeletes applies first and whatever else is queued, up to
// deleteBatch.
func (n *Node) applyDeletes(first dbDelete) {
	var (
		items []krpc.ID
		peers []storage.PeerKey
	)
	add := func(d dbDelete) {
		if d.isPeer {
			peers = append(peers, d.peer)
		} else {
			items = append(items, *d.item)
		}
	}
	add(first)
	for len(items)+len(peers) < deleteBatch {
		select {
		case d := <-n.dbDeletes:
			add(d)
			continue
		default:
		}
		break
	}
	if err := n.db.DeleteItems(items); err != nil {
		n.log.Error("delete evicted items", "err", err)
	}
	if err := n.db.DeletePeers(peers); err != nil {
		n.log.Error("delete evicted peers", "err", err)
	}
}

// drainDeletes applies every queued eviction; the read loop has stopped.
func (n *Node) drainDeletes() {
	for {
		select {
		case d := <-n.dbDeletes:
			n.applyDeletes(d)
		default:
			return
		}
	}
}

// durable arranges for w to be written before reply is sent to the query
// tid from to, and returns krpc.Deferred; it runs on the read loop. If too
// many writes are pending it answers 202 at once instead.
func (n *Node) durable(to netip.AddrPort, tid string, reply *krpc.Msg, w *durableWrite) *krpc.Msg {
	select {
	case n.writeSlots <- struct{}{}:
	default:
		n.metrics.StorageRejections.WithLabelValues(w.kind, metrics.RejectBusy).Inc()
		return n.sentError(errMsg(krpc.ErrCodeServer, "server busy"))
	}
	n.metrics.DBWritesInFlight.Inc()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := w.write()
		// Released before the reply is sent, so a querier that has its
		// answer sees the gauge down.
		n.metrics.DBWritesInFlight.Dec()
		<-n.writeSlots
		if err != nil {
			n.log.Error("durable write", "kind", w.kind, "err", err)
			n.metrics.StorageRejections.WithLabelValues(w.kind, metrics.RejectDBError).Inc()
			n.srv.Reply(to, tid, n.sentError(errMsg(krpc.ErrCodeServer, "storage error")))
			return
		}
		n.srv.Reply(to, tid, reply)
	}()
	return krpc.Deferred
}

// rejoin pings the nodes saved by the last run; those that answer enter
// the routing table (onResponse). If any did, it looks up our own id
// through them to fill the table. Bootstrap waits for it, so a restarted
// node contacts its old neighbours before any bootstrap router.
func (n *Node) rejoin(saved []krpc.NodeInfo) {
	defer n.wg.Done()
	defer close(n.rejoined)
	if len(saved) == 0 {
		return
	}
	slots := make(chan struct{}, rejoinParallel)
	var wg sync.WaitGroup
	for _, s := range saved {
		select {
		case slots <- struct{}{}:
		case <-n.ctx.Done():
		}
		if n.ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			_, _ = n.query(n.ctx, s.Addr, krpc.MethodPing, nil)
		}()
	}
	wg.Wait()
	good, _, _ := n.table.Counts(n.clock.Now())
	n.log.Info("pinged saved nodes", "saved", len(saved), "table", n.table.Len(), "good", good)
	if n.table.Len() == 0 || n.ctx.Err() != nil {
		return
	}
	_, err := n.lookup(n.ctx, metrics.LookupBootstrap, n.id, func(ctx context.Context, to netip.AddrPort) (*krpc.Msg, error) {
		return n.query(ctx, to, krpc.MethodFindNode, &krpc.Args{Target: &n.id})
	}, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		n.log.Debug("rejoin lookup", "err", err)
	}
}

// persistLoop saves the routing table and deletes expired records from the
// DB every SaveInterval.
func (n *Node) persistLoop() {
	defer n.wg.Done()
	n.every(n.cfg.SaveInterval, func() {
		n.saveTable()
		if items, peers, err := n.db.DeleteExpired(n.clock.Now()); err != nil {
			n.log.Error("delete expired records", "err", err)
		} else if items+peers > 0 {
			n.log.Debug("deleted expired records", "items", items, "peers", peers)
		}
	})
}

// saveTable saves the routing table's nodes. An empty table is not saved,
// so a node that could reach nobody keeps the nodes of its last good run.
func (n *Node) saveTable() {
	nodes := n.table.Nodes()
	if len(nodes) == 0 {
		return
	}
	if err := n.db.SaveNodes(nodes); err != nil {
		n.log.Error("save routing table", "err", err)
		return
	}
	n.log.Debug("routing table saved", "nodes", len(nodes))
}

// dbStats reports the DB for metrics.
func (n *Node) dbStats() metrics.DBStats {
	s := n.db.Stats()
	return metrics.DBStats{Commits: s.Commits, Writes: s.Writes, WriteErrors: s.WriteErrors, Corrupt: s.Corrupt, Size: s.Size}
}

// DataDir returns the directory of the node's database, or "" if the node
// keeps its state in memory.
func (n *Node) DataDir() string {
	if n.db == nil {
		return ""
	}
	return filepath.Dir(n.db.Path())
}

// openState opens the database of cfg.DataDir, if any, and chooses the
// node id (see chooseID).
func openState(cfg *Config) (*storage.DB, krpc.ID, error) {
	if cfg.DataDir == "" {
		id, err := chooseID(cfg, nil)
		return nil, id, err
	}
	db, err := openDB(cfg.DataDir)
	if err != nil {
		return nil, krpc.ID{}, err
	}
	id, err := chooseID(cfg, db)
	if err != nil {
		_ = db.Close()
		return nil, krpc.ID{}, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	return db, id, nil
}
