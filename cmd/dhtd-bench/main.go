// Command dhtd-bench is the load tool of dhtd: it sends well-formed KRPC
// queries (ping, find_node, get_peers, get) to a DHT node on loopback from
// several UDP sockets and source addresses, validates every answer, and
// reports answers per second, loss, latency percentiles and, given the
// server's pid, answers per server CPU-second and the server's RSS.
//
// Subcommands:
//
//	dhtd-bench load  --target 127.0.0.1:6881 [flags]   measure a running node
//	dhtd-bench serve --listen 127.0.0.1:6881 [flags]   run a dhtd node (package node)
//	                                                   with pprof, for profiling under load
//	dhtd-bench announce --target 127.0.0.1:6881 [flags] store many peers on a node
//	dhtd-bench echo  --listen 127.0.0.1:0              a bare UDP echo server, the baseline
//	dhtd-bench filler --count 16                       live nodes that keep answering, the
//	                                                   shared routing table of a fair run
//	dhtd-bench seed  --target 127.0.0.1:6881           store 50 peers and a 1,000-byte item
//	dhtd-bench core  --listen 127.0.0.1:0              the node core (node.CoreNode) on a socket
//
// Only loopback targets are accepted: the tool is a flood by design.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dhtd-bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: dhtd-bench load|serve|announce|echo|filler|seed|core [flags] (-h for help)")
	}
	switch args[0] {
	case "load":
		return loadCommand(args[1:], stdout, stderr)
	case "serve":
		return serveCommand(args[1:], stdout, stderr)
	case "announce":
		return announceCommand(args[1:], stdout, stderr)
	case "echo":
		return echoCommand(args[1:], stdout, stderr)
	case "filler":
		return fillerCommand(args[1:], os.Stdin, stdout, stderr)
	case "seed":
		return seedCommand(args[1:], stdout, stderr)
	case "core":
		return coreCommand(args[1:], os.Stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: dhtd-bench load|serve|announce|echo|filler|seed|core [flags]; dhtd-bench load -h lists the flags")
		return nil
	}
	return fmt.Errorf("unknown subcommand %q: want load, serve, announce, echo, filler, seed or core", args[0])
}
