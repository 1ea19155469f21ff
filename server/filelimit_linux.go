package server

import "syscall"

// raiseFileLimit raises the soft limit on open files to the hard limit and
// returns the limit in force. Go's runtime already raises it to one below
// the hard limit; this takes the last one and, above all, reads the limit
// that caps the connections a server can hold.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, err
		}
		lim = raised
	}
	return lim.Cur, nil
}
