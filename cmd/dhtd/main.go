// Command dhtd runs a BitTorrent Mainline DHT node and talks to DHT nodes
// from the shell.
package main

import (
	"io"
	"os"
	"runtime"

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
	// No command serves or writes a heap profile, so allocations are not
	// sampled for one: each sample walks the allocating goroutine's stack
	// through the function tables (pages of the executable that would
	// otherwise stay untouched) and keeps a bucket table of its own.
	runtime.MemProfileRate = 0
	os.Exit(runCLI(os.Args, os.Stdout, os.Stderr))
}

// runCLI runs the command line args and returns the exit status (exit.go);
// data goes to stdout, errors and summaries to stderr.
func runCLI(args []string, stdout, stderr io.Writer) int {
	app := newApp()
	app.Writer, app.ErrWriter = stdout, stderr
	if len(args) == 0 || args[len(args)-1] != "--generate-bash-completion" {
		args = interspersed(app, args) // completion needs its flag last
	}
	err := app.Run(args)
	if err != nil {
		report(stderr, err)
	}
	return exitCode(err)
}

func newApp() *cli.App {
	app := &cli.App{
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
	finishApp(app)
	return app
}
