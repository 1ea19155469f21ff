package web

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"path"
	"strings"
	"testing"
)

// The vendored JavaScript (static/vendor/noble) is exactly what its
// SHA256SUMS lists: no file changed, none added or missing.
func TestVendoredFilesMatchChecksums(t *testing.T) {
	const dir = "static/vendor/noble"
	sums, err := static.ReadFile(dir + "/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(sums)))
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		listed[name] = true
		b, err := static.ReadFile(path.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != want {
			t.Errorf("%s: SHA-256 %x, SHA256SUMS says %s", name, got, want)
		}
	}
	if len(listed) == 0 {
		t.Fatal("SHA256SUMS lists nothing")
	}
	err = fs.WalkDir(static, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := strings.TrimPrefix(p, dir+"/")
		switch name {
		case "SHA256SUMS", "README.md", "vendor.sh":
		default:
			if !listed[name] {
				t.Errorf("%s is not in SHA256SUMS", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
