package main

import (
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

// startProfile writes a CPU profile of the process to $LEDGER_CPUPROFILE for
// $LEDGER_CPUPROFILE_SECONDS (default 60) when the first is set: for
// investigating where a long run (demo --scale day) spends its time.
func startProfile() {
	path := os.Getenv("LEDGER_CPUPROFILE")
	if path == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("LEDGER_CPUPROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 60
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	time.AfterFunc(time.Duration(secs)*time.Second, func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}
