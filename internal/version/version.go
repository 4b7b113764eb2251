package version

import (
	"runtime/debug"
	"sync"
)

// Version overrides everything else when set at link time:
//
//	go build -ldflags "-X github.com/krait-server/krait/internal/version.Version=v1.2.3" ./cmd/krait
var Version string

// Base is the release this source tree is working toward. It names a build
// that carries no other version information (built with -buildvcs=false
// outside a module download, for example) as Base + "-devel".
const Base = "v0.1.0"

var (
	once     sync.Once
	computed string
)

// String returns krait's version, e.g. "v1.2.3",
// "v0.0.0-20261124181404-172ea6ccd93a+dirty" or "v0.1.0-devel".
func String() string {
	once.Do(func() {
		bi, _ := debug.ReadBuildInfo()
		computed = FromBuildInfo(Version, bi)
	})
	return computed
}

// FromBuildInfo derives the version from a link-time override and the
// build information embedded in a binary (bi may be nil). It is exported
// so tests can check a binary's output against what the binary embeds
// (debug/buildinfo.ReadFile).
func FromBuildInfo(override string, bi *debug.BuildInfo) string {
	if override != "" {
		return override
	}
	if bi == nil {
		return Base + "-devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return Base + "-devel"
	}
	// Semver build metadata: "v0.1.0-devel+172ea6ccd93a.dirty".
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := Base + "-devel+" + rev
	if modified {
		v += ".dirty"
	}
	return v
}
