// Package browsertest starts headless Chromium for tests: it finds the
// browser (or skips the test when there is none, except on CI), launches a
// fresh profile per browser with fake media devices and the WebRTC flags
// that let ICE work over loopback, and copies the browser's console and
// uncaught exceptions into the test log.
package browsertest
