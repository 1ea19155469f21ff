package scrape

import (
	"maps"
	"strings"
	"testing"
)

func TestParseAndLabels(t *testing.T) {
	snap, err := parseText(strings.NewReader(`# HELP x
sotto_cluster_node_info{node="a",self="true",url="http://127.0.0.1:7880"} 1
sotto_rooms 3
odd{note="a \"quoted\" \\ value, with } inside"} 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Sum("sotto_rooms") != 3 || snap.Sum("sotto_cluster_node_info") != 1 {
		t.Fatalf("snapshot %v", snap)
	}
	for series, want := range map[string]map[string]string{
		`sotto_cluster_node_info{node="a",self="true",url="http://127.0.0.1:7880"}`: {"node": "a", "self": "true", "url": "http://127.0.0.1:7880"},
		`sotto_rooms`: {},
		`odd{note="a \"quoted\" \\ value, with } inside"}`: {"note": `a "quoted" \ value, with } inside`},
	} {
		if _, ok := snap[series]; !ok {
			t.Errorf("series %s not parsed", series)
		}
		if _, got, ok := Labels(series); !ok || !maps.Equal(got, want) {
			t.Errorf("Labels(%s) = %v, %v; want %v", series, got, ok, want)
		}
	}
	for _, bad := range []string{`x{a}`, `x{a="b`, `x{="b"}`} {
		if _, _, ok := Labels(bad); ok {
			t.Errorf("Labels(%s) accepted", bad)
		}
	}
}
