// Package wait lets tests wait for what real components do in their own
// time (a peer connecting, a counter moving, a participant leaving), with
// one deadline for the whole test suite.
package wait
