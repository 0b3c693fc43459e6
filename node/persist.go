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
// put or announce_peer is therefore checked against the in-memory store on
// the read loop (the BEP 44 rules, the store's bounds), then handed to a
// goroutine that writes it through the DB, and only once it is durable
// applies it to the in-memory store and answers: the handler detaches its
// krpc.ResponseWriter (ResponseWriter.Detach) and hands it to that
// goroutine with the write. A write the disk refused (a full disk,
// an I/O error) is answered 202 "storage error" and never reaches memory:
// it is not served, and it evicts nothing. Memory holds no more than the
// disk. Those goroutines call DB.PutItem/PutPeer concurrently,
// and bbolt's Batch folds concurrent writes into one commit, so under load
// the puts share their fsyncs. Their number is bounded by
// Config.MaxPendingWrites (gauge dhtd_db_writes_in_flight); past it, a
// write is refused with 202 "server busy" (dhtd_storage_rejections_total
// {reason="busy"}) instead of queueing without bound.
//
// Failing storage. While the last write failed, the node is not ready
// (Ready, /readyz 503) and dhtd_db_healthy is 0; writes are still tried,
// and the first that succeeds clears both. Storage errors are logged at
// most once per storageLogInterval, with the count of those left out.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
	// maxLoadDeletes bounds the evictions restoreStores deletes from the
	// DB at start, per kind.
	maxLoadDeletes = 1 << 16
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
// before its reply is sent; see durable.
type durableWrite struct {
	kind  string // metrics storage kind
	write func() error
	// apply, run once write has succeeded, keeps the write in memory; a
	// non-nil result is the error to answer with (the store refused it).
	apply func() *krpc.Error
}

// DataDirMarker is the file, next to DBFileName, that tells a data dir
// that held a database from a new one: without it a missing database is a
// first start, with it a loss of data. It also keeps a copy of the node id
// (a line "node_id <40 hex digits>"), so that the id survives the loss or
// damage of the database.
const DataDirMarker = "dhtd.initialized"

// ErrDataLoss is wrapped by the error of New, with Config.FailOnCorrupt,
// when the database of a data dir that held one is missing or empty.
var ErrDataLoss = errors.New("database lost")

// openDB creates dir (mode 0700) if needed and opens the database in it.
//
// A database that is damaged (storage.OpenDB fails with ErrDBCorrupt,
// which includes an empty file), or missing from a data dir that held one
// (DataDirMarker), is reported with one ERROR line. With
// cfg.FailOnCorrupt openDB then fails, touching nothing. Otherwise the file
// is renamed DBFileName.corrupt-<UTC time> and a new database takes what
// storage.SalvageDB recovers from it: the node id, then the routing table,
// then items and peers, each within the stores' bounds.
func openDB(cfg *Config, log *slog.Logger) (*storage.DB, error) {
	dir := cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, DBFileName)
	marker := filepath.Join(dir, DataDirMarker)
	_, mErr := os.Stat(marker)
	initialized := mErr == nil
	st, dErr := os.Stat(path)
	missing, empty := errors.Is(dErr, fs.ErrNotExist), dErr == nil && st.Size() == 0
	// An empty file is a loss even without the marker (a dhtd older than
	// the marker left the directory): bbolt writes a new file's first
	// pages as it creates it.
	if (missing && initialized) || empty {
		what := "missing"
		if empty {
			what = "empty"
		}
		err := fmt.Errorf("data dir %s: %s is %s, but the directory held a database: %w", dir, DBFileName, what, ErrDataLoss)
		if cfg.FailOnCorrupt {
			return nil, err
		}
		_, keep := markerID(marker)
		log.Error("database lost: starting with no saved nodes and no stored items", "file", path,
			"node_id_kept", keep, "err", err)
	}
	if empty {
		// Nothing to keep.
		if _, err := storage.RemoveEmptyDB(path); err != nil {
			return nil, fmt.Errorf("data dir %s: %w", dir, err)
		}
	}
	db, err := storage.OpenDB(path)
	if errors.Is(err, storage.ErrDBCorrupt) {
		if cfg.FailOnCorrupt {
			return nil, fmt.Errorf("data dir %s: %w (left as it is: --on-corrupt fail)", dir, err)
		}
		db, err = salvageDB(log, path, marker, err)
	}
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if id, ok := markerID(marker); ok {
		// The database lost the id (or never had it): the marker's copy.
		if _, has, err := db.NodeID(); err == nil && !has {
			if err := db.SetNodeID(id); err != nil {
				_ = db.Close()
				return nil, fmt.Errorf("data dir %s: %w", dir, err)
			}
		}
	}
	return db, nil
}

// markerID reads the node id kept in the DataDirMarker file at path.
func markerID(path string) (krpc.ID, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 4096 {
		return krpc.ID{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "node_id "); ok {
			if id, err := krpc.ParseID(strings.TrimSpace(hex)); err == nil {
				return id, true
			}
		}
	}
	return krpc.ID{}, false
}

// salvageDB moves the damaged database at path aside, opens a new one and
// copies into it what can be salvaged, logging one ERROR line. cause is
// why the file was refused; marker is the DataDirMarker file, whose copy of
// the node id openDB uses if the file's is lost.
func salvageDB(log *slog.Logger, path, marker string, cause error) (*storage.DB, error) {
	aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return nil, fmt.Errorf("move damaged database aside: %w", err)
	}
	db, err := storage.OpenDB(path)
	if err != nil {
		return nil, err
	}
	// The default limits lie above the stores' default bounds; the stores
	// evict the excess while loading.
	rep, serr := storage.SalvageDB(aside, db, storage.SalvageLimits{})
	if serr != nil && !errors.Is(serr, storage.ErrDBCorrupt) {
		_ = db.Close()
		return nil, serr
	}
	keep := rep.NodeID
	if !keep {
		_, keep = markerID(marker) // openDB restores it from there
	}
	log.Error("database damaged: moved aside, started with what could be salvaged",
		"file", path, "moved_to", aside, "cause", cause, "node_id_kept", keep,
		"nodes", rep.Nodes, "items", rep.Items, "peers", rep.Peers,
		"damaged_records_skipped", rep.Damaged, "limits_reached", rep.Truncated)
	return db, nil
}

// writeMarker writes the DataDirMarker file at path, with id, durably
// (a new file, then renamed over the old one), unless it already holds id.
func writeMarker(path string, id krpc.ID) error {
	if old, ok := markerID(path); ok && old == id {
		return nil
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = fmt.Fprintf(f, "This directory holds a dhtd database (%s); dhtd reports its absence as lost data.\nnode_id %s\n", DBFileName, id)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
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
	// The records the stores' bounds evict while loading are deleted from
	// the DB, at most maxLoadDeletes of each kind per start (a file far
	// beyond the bounds is trimmed over several starts, in bounded memory).
	n.items.SetOnRemove(func(t krpc.ID) {
		if len(deadItems) < maxLoadDeletes {
			deadItems = append(deadItems, t)
		}
	})
	n.peers.SetOnRemove(func(ih krpc.ID, a netip.AddrPort) {
		if len(deadPeers) < maxLoadDeletes {
			deadPeers = append(deadPeers, storage.PeerKey{IH: ih, Addr: a})
		}
	})
	// Each item goes straight into the store, whose bounds evict the
	// excess, so memory stays within them however large the file is
	// (Restore does not call the DB, as LoadItems requires).
	var items, refused int
	err := n.db.LoadItems(func(it storage.Item, src netip.Addr, exp time.Time) {
		if err := n.items.Restore(it, src, exp, now); err != nil {
			refused++ // the store is full of closer items
			return
		}
		items++
	})
	if err != nil {
		return nil, err
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
		"items_refused", refused, "corrupt_skipped", n.db.Stats().Corrupt)
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
		n.storageError("delete evicted items", "err", err)
	}
	if err := n.db.DeletePeers(peers); err != nil {
		n.storageError("delete evicted peers", "err", err)
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

// durable arranges for dw to be written, then answered through w: an
// empty response once dw is durable and applied, an error if the disk or
// the store refused it. It detaches w to answer later; it runs on the read
// loop. If too many writes are pending it answers 202 at once instead.
func (n *Node) durable(w krpc.ResponseWriter, dw *durableWrite) {
	select {
	case n.writeSlots <- struct{}{}:
	default:
		n.metrics.StorageRejections.WithLabelValues(dw.kind, metrics.RejectBusy).Inc()
		n.svc.Answer(w, &krpc.Error{Code: krpc.ErrCodeServer, Msg: "server busy"})
		return
	}
	w = w.Detach()
	n.metrics.DBWritesInFlight.Inc()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := dw.write()
		var refused *krpc.Error
		if err == nil && dw.apply != nil {
			refused = dw.apply()
		}
		// Released before the reply is sent, so a querier that has its
		// answer sees the gauge down.
		n.metrics.DBWritesInFlight.Dec()
		<-n.writeSlots
		if err != nil {
			n.storageError("durable write failed; the write is refused and not kept", "kind", dw.kind, "err", err)
			n.metrics.StorageRejections.WithLabelValues(dw.kind, metrics.RejectDBError).Inc()
			n.svc.Answer(w, &krpc.Error{Code: krpc.ErrCodeServer, Msg: "storage error"})
			return
		}
		n.storageRecovered()
		n.svc.Answer(w, refused)
	}()
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
		done := func(*krpc.Msg, error) {
			<-slots
			wg.Done()
		}
		if _, err := n.queryAsync(n.ctx, s.Addr, krpc.MethodPing, nil, done); err != nil {
			done(nil, err)
		}
	}
	wg.Wait() // the pings still out end by Close at the latest (ErrClosed)
	good, _, _ := n.table.Counts(n.clock.Now())
	n.log.Info("pinged saved nodes", "saved", len(saved), "table", n.table.Len(), "good", good)
	if n.table.Len() == 0 || n.ctx.Err() != nil {
		return
	}
	_, err := n.lookup(n.ctx, metrics.LookupBootstrap, n.id, n.ask(krpc.MethodFindNode, &krpc.Args{Target: &n.id}), nil)
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
			n.storageError("delete expired records", "err", err)
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
		n.storageError("save routing table", "err", err)
		return
	}
	n.log.Debug("routing table saved", "nodes", len(nodes))
}

// dbStats reports the DB for metrics.
func (n *Node) dbStats() metrics.DBStats {
	s := n.db.Stats()
	return metrics.DBStats{Commits: s.Commits, Writes: s.Writes, WriteErrors: s.WriteErrors, Corrupt: s.Corrupt,
		Size: s.Size, Healthy: !s.Failing}
}

// storageLogInterval is the least time between two storage error lines.
const storageLogInterval = 10 * time.Second

// storageLog rate-limits the storage lines: a full disk fails every
// write, and a line each would flood the log. A disk that is nearly full
// fails some writes and takes others, so the lines that say it works again
// are limited too.
type storageLog struct {
	mu         sync.Mutex
	lastErr    time.Time // of the last error line
	lastOK     time.Time // of the last "succeed again" line
	suppressed int       // errors not logged since the last line
	failing    bool      // an error was seen since the last success
}

// storageError logs a storage error, unless one was logged less than
// storageLogInterval ago: then it is only counted, and the next line says
// how many were left out.
func (n *Node) storageError(msg string, args ...any) {
	now := n.clock.Now()
	l := &n.storeLog
	l.mu.Lock()
	l.failing = true
	if !l.lastErr.IsZero() && now.Sub(l.lastErr) < storageLogInterval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.lastErr, l.suppressed = now, 0
	l.mu.Unlock()
	n.log.Error(msg, append(args, "errors_not_logged", suppressed)...)
}

// storageRecovered notes a successful write: after errors, a line (at most
// one per storageLogInterval) says the storage works again, with the count
// of errors not logged.
func (n *Node) storageRecovered() {
	now := n.clock.Now()
	l := &n.storeLog
	l.mu.Lock()
	if !l.failing {
		l.mu.Unlock()
		return
	}
	l.failing = false
	if !l.lastOK.IsZero() && now.Sub(l.lastOK) < storageLogInterval {
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.lastOK, l.suppressed = now, 0
	l.mu.Unlock()
	n.log.Warn("storage writes succeed again", "errors_not_logged", suppressed)
}

// storageHealthy reports whether the node's storage works: true without a
// DataDir, else whether the last write to the database succeeded.
func (n *Node) storageHealthy() bool { return n.db == nil || !n.db.Failing() }

// DataDir returns the directory of the node's database, or "" if the node
// keeps its state in memory.
func (a *Admin) DataDir() string {
	n := a.n
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
	db, err := openDB(cfg, cfg.Logger)
	if err != nil {
		return nil, krpc.ID{}, err
	}
	id, err := chooseID(cfg, db)
	if err == nil {
		err = writeMarker(filepath.Join(cfg.DataDir, DataDirMarker), id)
	}
	if err != nil {
		_ = db.Close()
		return nil, krpc.ID{}, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	return db, id, nil
}
