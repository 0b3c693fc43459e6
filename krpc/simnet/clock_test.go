package simnet

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestClockAdvanceFiresLongTimers(t *testing.T) {
	c := NewClock()
	before := c.Now()
	fired := make(chan string, 3)
	c.AfterFunc(time.Hour, func() { fired <- "1h" })
	c.AfterFunc(15*time.Minute, func() { fired <- "15m" })
	late := c.AfterFunc(2*time.Hour, func() { fired <- "2h" })

	c.Advance(30 * time.Minute)
	if got := recv(t, fired); got != "15m" {
		t.Fatalf("after 30m fired %q, want 15m", got)
	}
	c.Advance(30 * time.Minute) // exactly at the 1h deadline
	if got := recv(t, fired); got != "1h" {
		t.Fatalf("after 1h fired %q, want 1h", got)
	}
	select {
	case got := <-fired:
		t.Fatalf("%q fired early", got)
	case <-time.After(20 * time.Millisecond):
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d, want 1", c.Pending())
	}
	if d := c.Now().Sub(before); d < time.Hour || d > time.Hour+time.Second {
		t.Fatalf("Now moved by %v, want 1h", d)
	}
	if !late.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
}

func TestClockShortTimersRunInRealTime(t *testing.T) {
	c := NewClock()
	c.Advance(24 * time.Hour) // an offset does not disturb real-time timers
	start := time.Now()
	fired := make(chan string, 1)
	c.AfterFunc(20*time.Millisecond, func() { fired <- "20ms" })
	if got := recv(t, fired); got != "20ms" {
		t.Fatal(got)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("fired after %v, before its 20ms", el)
	}
	if c.Pending() != 0 {
		t.Fatalf("pending %d after firing", c.Pending())
	}
}

func TestClockStop(t *testing.T) {
	c := NewClock()
	var n atomic.Int32
	short := c.AfterFunc(10*time.Millisecond, func() { n.Add(1) })
	long := c.AfterFunc(time.Hour, func() { n.Add(1) })
	if !short.Stop() || !long.Stop() {
		t.Fatal("Stop of pending timers returned false")
	}
	if short.Stop() {
		t.Fatal("second Stop returned true")
	}
	c.Advance(2 * time.Hour)
	time.Sleep(30 * time.Millisecond)
	if n.Load() != 0 {
		t.Fatalf("%d stopped timers fired", n.Load())
	}

	// Stop after firing reports false; a timer fires only once even when
	// real time and Advance race for it.
	done := make(chan struct{}, 2)
	fired := c.AfterFunc(time.Millisecond, func() { done <- struct{}{} })
	time.Sleep(time.Millisecond)
	c.Advance(time.Second)
	<-done
	select {
	case <-done:
		t.Fatal("timer fired twice")
	case <-time.After(20 * time.Millisecond):
	}
	if fired.Stop() {
		t.Fatal("Stop after firing returned true")
	}
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(2 * time.Second):
		t.Fatal("timer did not fire")
		return ""
	}
}
