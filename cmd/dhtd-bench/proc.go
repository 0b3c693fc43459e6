package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// procCPU returns the CPU time pid's threads have run, in seconds: the
// sum of the first field of /proc/PID/task/TID/schedstat (nanoseconds on
// the CPU), which, unlike utime+stime in /proc/PID/stat (clock ticks of
// 10 ms), resolves the few milliseconds an open-loop run at a low rate
// costs. Without schedstat it falls back to utime+stime.
func procCPU(pid int) (float64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err == nil {
		var ns uint64
		ok := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // the thread exited
				}
				ok = false
				break
			}
			var run uint64
			if _, err := fmt.Sscan(string(b), &run); err != nil {
				ok = false
				break
			}
			ns += run
		}
		if ok {
			return float64(ns) / 1e9, nil
		}
	}
	return procStatCPU(pid)
}

// procStatCPU returns utime+stime of pid in seconds (/proc/PID/stat fields 14
// and 15, in clock ticks of 1/100 s: USER_HZ is 100 on Linux).
func procStatCPU(pid int) (float64, error) {
	b, err := readProc(pid, "stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var ut, st uint64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat utime %q: %w", pid, f[11], err)
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat stime %q: %w", pid, f[12], err)
	}
	return float64(ut+st) / 100, nil
}

// procRSS returns VmRSS of pid in KiB (/proc/PID/status).
func procRSS(pid int) (int64, error) {
	b, err := readProc(pid, "status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kib); err != nil {
				return 0, fmt.Errorf("/proc/%d/status VmRSS %q: %w", pid, rest, err)
			}
			return kib, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func readProc(pid int, name string) ([]byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		return nil, fmt.Errorf("read /proc/%d/%s: %w", pid, name, err)
	}
	return b, nil
}
