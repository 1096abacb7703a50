package scope

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{"empty", "", "", false},
		{"one", "read", "read", false},
		{"several", "groups read write", "groups read write", false},
		{"duplicates kept once", "read read write", "read write", false},
		{"extra spaces", "  read   write ", "read write", false},
		{"quote refused", `re"ad`, "", true},
		{"backslash refused", `re\ad`, "", true},
		{"non-ascii refused", "réad", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got.String() != tt.want {
				t.Fatalf("Parse(%q) = %q, want %q", tt.in, got.String(), tt.want)
			}
		})
	}
}

func TestContainsAndMissing(t *testing.T) {
	all, _ := Parse("groups read write")
	sub, _ := Parse("read write")
	wide, _ := Parse("read admin")
	if !all.Contains(sub) {
		t.Fatal("groups read write should contain read write")
	}
	if all.Contains(wide) {
		t.Fatal("groups read write should not contain admin")
	}
	if got := all.Missing(wide).String(); got != "admin" {
		t.Fatalf("Missing = %q, want admin", got)
	}
	if !all.Contains(nil) {
		t.Fatal("every set contains the empty set")
	}
}

func TestIn(t *testing.T) {
	tests := []struct {
		list, tok string
		want      bool
	}{
		{"read write", "read", true},
		{"read write", "write", true},
		{"read write", "rea", false},
		{"read write", "read write", false},
		{"readwrite", "read", false},
		{"", "read", false},
		{"read", "read", true},
		{"openid  profile", "profile", true},
		{"x read", "x rea", false},
	}
	for _, tt := range tests {
		if got := In(tt.list, tt.tok); got != tt.want {
			t.Errorf("In(%q, %q) = %v, want %v", tt.list, tt.tok, got, tt.want)
		}
	}
}
