package cluster

import (
	"sync"
	"syscall"
	"time"
)

// cpuMeter measures the cores the process keeps busy between samples.
type cpuMeter struct {
	mu    sync.Mutex
	wall  time.Time
	cpu   time.Duration
	cores float64
}

// sample ends one measurement and starts the next.
func (m *cpuMeter) sample() {
	now, cpu := time.Now(), processCPU()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.wall.IsZero() {
		if wall := now.Sub(m.wall); wall > 0 {
			m.cores = float64(cpu-m.cpu) / float64(wall)
		}
	}
	m.wall, m.cpu = now, cpu
}

// load is the cores busy over the last measurement, 0 before the first.
func (m *cpuMeter) load() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cores
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
