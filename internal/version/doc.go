// Package version is the one place krait's version lives. `krait version`,
// the start-up log and the WSGI environ's SERVER_SOFTWARE all read String.
//
// The version comes, in order of preference, from the link-time override
// (-ldflags "-X github.com/krait-server/krait/internal/version.Version=v1.2.3"),
// from the main module's version Go records in the binary (a tag for
// `go install ...@v1.2.3`, a pseudo-version such as
// v0.0.0-20261124181404-172ea6ccd93a+dirty for a build in a git checkout),
// from the VCS revision Go records, and only then from Base, the release
// this source tree is heading for, marked "-devel".
package version
