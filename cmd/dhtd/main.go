// Command dhtd runs a BitTorrent Mainline DHT node and talks to DHT nodes
// from the shell.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/node"
)

// defaultRouters are the public bootstrap routers used by `dhtd run` when no
// --bootstrap is given. Tests always pass their own.
var defaultRouters = []string{
	"router.bittorrent.com:6881",
	"dht.transmissionbt.com:6881",
	"router.utorrent.com:6881",
}

func main() {
	app := newApp()
	if err := app.Run(interspersed(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "dhtd:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "dhtd",
		Usage:   "a BitTorrent Mainline DHT node",
		Version: node.Version,
		Commands: []*cli.Command{
			runCommand(),
			probeCommand(),
			peersCommand(),
			findNodeCommand(),
			announceCommand(),
			keygenCommand(),
			putCommand(),
			getCommand(),
			tableCommand(),
			sampleCommand(),
			scrapeCommand(),
			conformanceCommand(),
			pkarrCommand(),
			simCommand(),
		},
	}
}
