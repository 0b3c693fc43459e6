package node

// Settings a running node can change (a reload of the daemon's
// configuration, on SIGHUP).

// SetLimits changes the per-source packet limit (packets per second and
// burst; a rate <= 0 switches it off) and the global budget of reply bytes
// per second (<= 0 switches it off; the burst is two seconds' worth).
func (n *Node) SetLimits(rate, burst float64, replyBytesPerSecond int) {
	n.limiter.SetRate(rate, burst)
	r := float64(replyBytesPerSecond)
	n.replyBudget.SetRate(r, 2*r)
}

// SetBootstrap replaces the bootstrap addresses (host:port) used from the
// next Bootstrap on; the addresses resolved before stay until then.
func (n *Node) SetBootstrap(addrs []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bootList = append([]string(nil), addrs...)
}

// BootstrapList returns the configured bootstrap addresses (host:port).
func (n *Node) BootstrapList() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.bootList...)
}
