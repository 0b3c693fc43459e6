package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// checkBootstrapSyntax refuses a --bootstrap entry that is not host:port
// with a port in 1..65535: a usage error of cmd.
func checkBootstrapSyntax(cmd string, entries []string) error {
	for _, e := range entries {
		if err := checkHostPort(cmd, "--bootstrap", e); err != nil {
			return err
		}
	}
	return nil
}

// checkHostPort refuses an address (what: the flag or argument that gave
// it) that is not host:port with a port in 1..65535: a usage error of cmd.
func checkHostPort(cmd, what, s string) error {
	if _, err := netip.ParseAddrPort(s); err == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			err = errors.New(ae.Err) // drop the repeated address
		}
		return usageErrorf(cmd, "%s %q: %v (want host:port)", what, s, err)
	}
	if host == "" {
		return usageErrorf(cmd, "%s %q: no host (want host:port)", what, s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return usageErrorf(cmd, "%s %q: port %q is not in 1..65535", what, s, port)
	}
	return nil
}

// resolveBootstrap looks up the host names among entries (host:port, the
// syntax already checked) and returns an error naming each failure when
// none of the entries is usable; notFound reports whether every failure
// was a name that does not exist (rather than, say, an unreachable DNS
// server).
func resolveBootstrap(ctx context.Context, entries []string) (notFound bool, err error) {
	var fails []string
	notFound = true
	for _, e := range entries {
		if _, err := netip.ParseAddrPort(e); err == nil {
			return false, nil
		}
		host, _, _ := net.SplitHostPort(e)
		if _, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsNotFound {
				notFound = false
			}
			fails = append(fails, fmt.Sprintf("%s: %v", e, err))
			continue
		}
		return false, nil
	}
	if len(fails) == 0 {
		return false, nil
	}
	return notFound, fmt.Errorf("bootstrap %s", strings.Join(fails, "; "))
}
