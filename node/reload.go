package node

// Settings a running node can change (a reload of the daemon's
// configuration, on SIGHUP).

// SetLimits changes the per-source packet limit (packets per second and
// burst; a rate <= 0 switches it off) and the global budget of reply bytes
// per second (<= 0 switches it off; the burst is two seconds' worth).
func (a *Admin) SetLimits(rate, burst float64, replyBytesPerSecond int) {
	a.n.limiter.SetRate(rate, burst)
	r := float64(replyBytesPerSecond)
	a.n.replyBudget.SetRate(r, 2*r)
}

// SetBootstrap replaces the bootstrap addresses (host:port) used from the
// next Bootstrap on; the addresses resolved before stay until then.
func (a *Admin) SetBootstrap(addrs []string) {
	n := a.n
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bootList = append([]string(nil), addrs...)
}

// BootstrapList returns the configured bootstrap addresses (host:port).
func (a *Admin) BootstrapList() []string { return a.n.bootstrapList() }

func (n *Node) bootstrapList() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.bootList...)
}
