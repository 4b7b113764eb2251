package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name     string
		override string
		bi       *debug.BuildInfo
		want     string
	}{
		{"override wins", "v9.9.9", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v9.9.9"},
		{"module version", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"pseudo-version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261124181404-172ea6ccd93a+dirty"}}, "v0.0.0-20261124181404-172ea6ccd93a+dirty"},
		{"devel with clean vcs", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("172ea6ccd93a4f8176256c5505fd19a0c2012a5c", "false")}, Base + "-devel+172ea6ccd93a"},
		{"devel with dirty vcs", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("172ea6ccd93a4f8176256c5505fd19a0c2012a5c", "true")}, Base + "-devel+172ea6ccd93a.dirty"},
		{"nothing recorded", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Base + "-devel"},
		{"no build info", "", nil, Base + "-devel"},
	}
	for _, tc := range tests {
		if got := FromBuildInfo(tc.override, tc.bi); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStringIsStable(t *testing.T) {
	if a, b := String(), String(); a == "" || a != b || a == "dev" {
		t.Fatalf("String() = %q then %q", a, b)
	}
}
