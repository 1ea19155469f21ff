package web_test

import "testing"

// TestResumeUnitsInBrowser runs the unit tests of the page's rejoin logic
// (static/test/resume.js) in Chromium.
func TestResumeUnitsInBrowser(t *testing.T) {
	srv := e2eeServer(t)
	results := runPage(t, srv.URL+"/test/resume.html", "resumeResults")
	for _, r := range results {
		if !r.OK {
			t.Errorf("%s: %s", r.Name, r.Error)
		}
	}
	if len(results) < 10 {
		t.Errorf("only %d tests ran", len(results))
	}
}
