package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

// progressEvery is the shortest time between two progress updates.
const progressEvery = 200 * time.Millisecond

// progress is a one-line progress report on stderr, redrawn in place, shown
// only when stderr is a terminal (a script's stderr stays clean).
type progress struct {
	w     io.Writer // nil: not a terminal, nothing is shown
	last  time.Time
	shown bool
}

func newProgress(c *cli.Context) *progress {
	f, ok := c.App.ErrWriter.(*os.File)
	if !ok {
		return &progress{}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return &progress{}
	}
	return &progress{w: f}
}

// show redraws the line, at most every progressEvery.
func (p *progress) show(format string, args ...any) {
	if p.w == nil || time.Since(p.last) < progressEvery {
		return
	}
	p.last, p.shown = time.Now(), true
	fmt.Fprintf(p.w, "\r\033[K"+format, args...)
}

// done clears the line.
func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
