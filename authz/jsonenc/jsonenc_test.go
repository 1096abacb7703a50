package jsonenc

import (
	"encoding/json"
	"testing"
)

func FuzzStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "abc", `a"b\c`, "\n\t\x00\x1f", "é日本", "\xff\xfe", "<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var back string
		if err := json.Unmarshal(String(nil, s), &back); err != nil {
			t.Fatalf("String(%q) is not JSON: %s: %v", s, String(nil, s), err)
		}
		var want string
		wb, _ := json.Marshal(s)
		_ = json.Unmarshal(wb, &want)
		if back != want {
			t.Fatalf("String(%q) decodes to %q, encoding/json gives %q", s, back, want)
		}
	})
}
