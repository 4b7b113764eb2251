package integration

import (
	"bufio"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/version"
)

// User-facing defects of the command line and the repository (issue 7,
// defects 3-7), each through the real binary or the repository as cloned.

// --- binding exactly the address family asked for --------------------------

// requireIPv6Loopback skips when this machine cannot use [::1].
func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("this machine has no usable IPv6 loopback ([::1]: %v; see `ip -6 addr`): cannot check which families krait binds", err)
	}
	l.Close()
}

// boundPort returns krait's only listening address and its port.
func boundPort(t *testing.T, k *Krait) (host, port string) {
	t.Helper()
	if len(k.Addrs) != 1 {
		t.Fatalf("krait listens on %v, want exactly one address", k.Addrs)
	}
	host, port, err := net.SplitHostPort(k.Addrs[0])
	if err != nil {
		t.Fatalf("listening address %q: %v", k.Addrs[0], err)
	}
	return host, port
}

// mustServe checks that a GET /hello over network/addr is answered 200.
func mustServe(t *testing.T, network, addr string) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	setDeadline(c)
	fmt.Fprintf(c, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resps, err := readResponses(bufio.NewReader(c), 1, "GET")
	if len(resps) != 1 || resps[0].Status != 200 {
		t.Fatalf("GET /hello over %s: %v %v", addr, statuses(resps), err)
	}
}

// mustRefuse checks that nothing listens on network/addr.
func mustRefuse(t *testing.T, network, addr string) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, ioTimeout)
	if err == nil {
		c.Close()
		t.Fatalf("%s %s accepted a connection: krait listens in a family it was not asked for", network, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s %s: %v, want connection refused", network, addr, err)
	}
}

func TestBindAddressFamily(t *testing.T) {
	requireIPv6Loopback(t)
	start := func(t *testing.T, bind string) *Krait {
		return startKrait(t, nil, "app:application", "--chdir", testdataDir("wsgiapp"), "-b", bind)
	}
	t.Run("0.0.0.0 is IPv4 only", func(t *testing.T) {
		k := start(t, "0.0.0.0:0")
		host, port := boundPort(t, k)
		if host != "0.0.0.0" {
			t.Errorf("krait logged listening on %s, want 0.0.0.0", k.Addrs[0])
		}
		mustServe(t, "tcp4", net.JoinHostPort("127.0.0.1", port))
		mustRefuse(t, "tcp6", net.JoinHostPort("::1", port))
	})
	t.Run("127.0.0.1 is IPv4 only", func(t *testing.T) {
		k := start(t, "127.0.0.1:0")
		_, port := boundPort(t, k)
		mustServe(t, "tcp4", net.JoinHostPort("127.0.0.1", port))
		mustRefuse(t, "tcp6", net.JoinHostPort("::1", port))
	})
	t.Run("[::1] is IPv6 only", func(t *testing.T) {
		k := start(t, "[::1]:0")
		_, port := boundPort(t, k)
		mustServe(t, "tcp6", net.JoinHostPort("::1", port))
		mustRefuse(t, "tcp4", net.JoinHostPort("127.0.0.1", port))
	})
	t.Run("[::] alone takes both", func(t *testing.T) {
		k := start(t, "[::]:0")
		_, port := boundPort(t, k)
		mustServe(t, "tcp6", net.JoinHostPort("::1", port))
		mustServe(t, "tcp4", net.JoinHostPort("127.0.0.1", port))
	})
}

// --- the version: krait version and SERVER_SOFTWARE ------------------------

const versionVar = "github.com/krait-server/krait/internal/version.Version"

// embeddedVersion is the version bin must report, derived from the build
// information embedded in it (and a -X override among its -ldflags).
func embeddedVersion(t *testing.T, bin string) string {
	t.Helper()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading the build info of %s: %v", bin, err)
	}
	override := ""
	for _, s := range bi.Settings {
		if s.Key == "-ldflags" {
			if m := regexp.MustCompile(regexp.QuoteMeta(versionVar) + `=(\S+)`).FindStringSubmatch(s.Value); m != nil {
				override = strings.Trim(m[1], `'"`)
			}
		}
	}
	return version.FromBuildInfo(override, bi)
}

// printedVersion runs `bin version` and returns the version word.
func printedVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	m := regexp.MustCompile(`^krait (\S+) \(go[^,]+, [a-z0-9]+/[a-z0-9]+\)\n$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("%s version printed %q, want \"krait VERSION (goX, os/arch)\"", bin, out)
	}
	return m[1]
}

// buildKrait builds the binary with extra go build flags into a temporary
// directory.
func buildKrait(t *testing.T, flags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "krait")
	args := append(append([]string{"build", "-o", bin}, flags...), "./cmd/krait")
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

func TestVersionIsReal(t *testing.T) {
	t.Run("the test binary", func(t *testing.T) {
		got, want := printedVersion(t, kraitBin), embeddedVersion(t, kraitBin)
		if got != want {
			t.Errorf("krait version prints %q, the binary's build info says %q", got, want)
		}
		if got == "dev" || got == "" {
			t.Errorf("krait version prints %q", got)
		}
	})
	t.Run("ldflags override", func(t *testing.T) {
		if _, err := exec.LookPath("go"); err != nil {
			t.Skip("go is not on PATH: cannot build a binary with -ldflags")
		}
		bin := buildKrait(t, "-ldflags", "-X "+versionVar+"=v9.8.7-clitest")
		if got := printedVersion(t, bin); got != "v9.8.7-clitest" {
			t.Errorf("krait version prints %q, want the -X value v9.8.7-clitest", got)
		}
	})
	t.Run("VCS information", func(t *testing.T) {
		if _, err := exec.LookPath("go"); err != nil {
			t.Skip("go is not on PATH")
		}
		if err := exec.Command("git", "-C", repoRoot, "rev-parse", "--git-dir").Run(); err != nil {
			t.Skip("the repository is not a git checkout: no VCS information to embed")
		}
		bin := buildKrait(t, "-buildvcs=true")
		got, want := printedVersion(t, bin), embeddedVersion(t, bin)
		if got != want {
			t.Errorf("krait version prints %q, the binary's build info says %q", got, want)
		}
		// Go records the checkout as a pseudo-version or a tag.
		if !regexp.MustCompile(`^v\d+\.\d+\.\d+`).MatchString(got) || strings.HasSuffix(got, "-devel") {
			t.Errorf("a build in a git checkout reports %q, want the module's version from VCS", got)
		}
	})
}

func TestServerSoftware(t *testing.T) {
	k, _ := startWSGI(t)
	resp, body := k.Get("/echo")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /echo: %d %s", resp.StatusCode, body)
	}
	want := "krait/" + printedVersion(t, kraitBin)
	if got := echoInfo(t, body)["SERVER_SOFTWARE"]; got != want {
		t.Errorf("environ SERVER_SOFTWARE = %#v, want %q", got, want)
	}
	if m := regexp.MustCompile(`msg=starting version=(\S+)`).FindStringSubmatch(k.Log()); m == nil || "krait/"+m[1] != want {
		t.Errorf("start-up log does not name version %s: %v", want, m)
	}
}

// --- naming the interpreter -------------------------------------------------

// pyFacts is what an interpreter says about itself.
type pyFacts struct {
	Executable     string `json:"executable"`
	Version        string `json:"version"`
	Implementation string `json:"implementation"`
	Prefix         string `json:"prefix"`
	BasePrefix     string `json:"base_prefix"`
}

func askPython(t *testing.T, python string) pyFacts {
	t.Helper()
	out, err := exec.Command(python, "-c", `import json, platform, sys
print(json.dumps({"executable": sys.executable, "version": platform.python_version(),
    "implementation": platform.python_implementation(), "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix)}))`).Output()
	if err != nil {
		t.Fatalf("%s -c: %v", python, err)
	}
	var f pyFacts
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%s said %q: %v", python, out, err)
	}
	return f
}

func (f pyFacts) inVenv() bool { return f.Prefix != f.BasePrefix }

// systemPython returns an interpreter that is in no virtualenv: the base
// installation under the test interpreter.
func systemPython(t *testing.T) string {
	t.Helper()
	f := askPython(t, testPython(t))
	if !f.inVenv() {
		return testPython(t)
	}
	for _, name := range []string{"python3", "python"} {
		p := filepath.Join(f.BasePrefix, "bin", name)
		if _, err := os.Stat(p); err == nil && !askPython(t, p).inVenv() {
			return p
		}
	}
	t.Skipf("no interpreter outside a virtualenv found under %s", f.BasePrefix)
	return ""
}

func TestStartupLogNamesInterpreter(t *testing.T) {
	python := testPython(t)
	f := askPython(t, python)
	k := startKrait(t, nil, "app:application", "--chdir", testdataDir("wsgiapp"))
	// The probe runs beside the start-up: its line may follow "ready".
	m := k.MustWaitLog(regexp.MustCompile(`msg=python path=(\S+) executable=(\S+) version="([^"]+)" virtualenv=(\S+)`))
	wantVenv := "none"
	if f.inVenv() {
		wantVenv = f.Prefix
	}
	abs, _ := filepath.Abs(python)
	if m[1] != abs || m[2] != f.Executable || m[3] != f.Implementation+" "+f.Version || m[4] != wantVenv {
		t.Errorf("logged path=%s executable=%s version=%q virtualenv=%s; want %s %s %q %s",
			m[1], m[2], m[3], m[4], abs, f.Executable, f.Implementation+" "+f.Version, wantVenv)
	}
}

// missingDependencyApp writes an app whose import needs a package that is
// not installed, and returns its directory.
func missingDependencyApp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "import krait_test_missing_dependency  # installed nowhere\n\napp = None\n"
	if err := os.WriteFile(filepath.Join(dir, "hello.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestModuleNotFoundNamesInterpreter(t *testing.T) {
	const missing = "ModuleNotFoundError: No module named 'krait_test_missing_dependency'"
	t.Run("no virtualenv", func(t *testing.T) {
		python := systemPython(t)
		f := askPython(t, python)
		dir := missingDependencyApp(t)
		code, _, stderr := runKrait(t, bootExitLimit, "serve", "hello:app", "--chdir", dir, "-b", "127.0.0.1:0", "--python", python)
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		for _, want := range []string{
			missing,
			"the workers ran " + python,
			f.Implementation + " " + f.Version,
			"not in a virtualenv",
			"--python /path/to/venv/bin/python",
			"activate it first",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr)
		}
	})
	t.Run("no virtualenv, one beside the app", func(t *testing.T) {
		python := systemPython(t)
		dir := missingDependencyApp(t)
		venv := filepath.Join(dir, ".venv")
		if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(venv, "pyvenv.cfg"), []byte("home = /usr/bin\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runKrait(t, bootExitLimit, "serve", "hello:app", "--chdir", dir, "-b", "127.0.0.1:0", "--python", python)
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		for _, want := range []string{missing, "--python " + filepath.Join(venv, "bin", "python"), ". " + venv + "/bin/activate"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
	t.Run("in a virtualenv", func(t *testing.T) {
		python := testPython(t)
		f := askPython(t, python)
		if !f.inVenv() {
			t.Skipf("the test interpreter %s is in no virtualenv", python)
		}
		dir := missingDependencyApp(t)
		code, _, stderr := runKrait(t, bootExitLimit, "serve", "hello:app", "--chdir", dir, "-b", "127.0.0.1:0", "--python", python)
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		if !strings.Contains(stderr, missing) || !strings.Contains(stderr, "from the virtualenv "+f.Prefix) {
			t.Errorf("stderr does not name the virtualenv %s:\n%s", f.Prefix, stderr)
		}
		// The right interpreter ran: no advice to pick another.
		if strings.Contains(stderr, "activate it first") || strings.Contains(stderr, "--python /path") {
			t.Errorf("stderr suggests another interpreter although a virtualenv's ran:\n%s", stderr)
		}
	})
}

// --- flags named as written -------------------------------------------------

func TestBadFlagNamedAsWritten(t *testing.T) {
	tests := []struct {
		args []string
		want string // the exact first line of stderr
	}{
		{[]string{"-c", "gunicorn.conf.py"}, `krait serve: -c: unknown flag`},
		{[]string{"--c"}, `krait serve: --c: unknown flag`},
		{[]string{"--no-such-flag"}, `krait serve: --no-such-flag: unknown flag`},
		{[]string{"--workers", "many"}, `krait serve: --workers: "many" is not a whole number`},
		{[]string{"-w", "many"}, `krait serve: -w: "many" is not a whole number`},
		{[]string{"-workers", "0"}, `krait serve: -workers: 0 is out of range: must be between 1 and 1024`},
		{[]string{"-w", "0"}, `krait serve: -w: 0 is out of range: must be between 1 and 1024`},
		{[]string{"--threads"}, `krait serve: --threads: needs a value`},
		{[]string{"-b", "nonsense"}, `krait serve: -b: "nonsense" is not HOST:PORT, [IPv6]:PORT or unix:PATH`},
		{[]string{"--ws-per-message-deflate=maybe"}, `krait serve: --ws-per-message-deflate: "maybe" is not true or false`},
		{[]string{"-log-level", "loud"}, `krait serve: -log-level: "loud" is not one of debug, info, warning, error`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"serve", "app:application"}, tc.args...)
			code, _, stderr := runKrait(t, 30*time.Second, args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if first, _, _ := strings.Cut(stderr, "\n"); first != tc.want {
				t.Errorf("stderr's first line is %q, want %q", first, tc.want)
			}
		})
	}
}

// --- a repository that stands on its own ------------------------------------

// outside is the team directory beside the repository the project once
// read from; built from parts so this file does not match itself.
var outside = ".." + "/" + "shared"

func TestRepositoryStandsAlone(t *testing.T) {
	t.Run("conformance corpus", func(t *testing.T) {
		dir := filepath.Join(repoRoot, "testdata", "conformance")
		for _, name := range []string{"http1-requests.json", "LICENSE.gunicorn", "README.md"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Errorf("the corpus needs %s: %v", name, err)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, "http1-requests.json"))
		if err != nil {
			t.Fatal(err)
		}
		var corpus struct {
			Cases []json.RawMessage `json:"cases"`
		}
		if err := json.Unmarshal(b, &corpus); err != nil {
			t.Fatalf("corpus: %v", err)
		}
		if len(corpus.Cases) != 137 {
			t.Errorf("corpus has %d cases, its README says 137", len(corpus.Cases))
		}
	})
	t.Run("design notes", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(repoRoot, "docs", "DESIGN.md")); err != nil {
			t.Errorf("docs/DESIGN.md: %v", err)
		}
	})
	t.Run("nothing reads from outside the repository", func(t *testing.T) {
		for _, path := range repoTextFiles(t) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.IndexByte(string(b), 0) >= 0 {
				continue // a binary, e.g. a built krait
			}
			if i := strings.Index(string(b), outside); i >= 0 {
				rel, _ := filepath.Rel(repoRoot, path)
				line := strings.Count(string(b[:i]), "\n") + 1
				t.Errorf("%s:%d refers to %s, outside the repository", rel, line, outside)
			}
		}
	})
	t.Run("markdown links resolve", func(t *testing.T) {
		link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
		for _, path := range repoTextFiles(t) {
			if !strings.HasSuffix(path, ".md") {
				continue
			}
			b, _ := os.ReadFile(path)
			for _, m := range link.FindAllStringSubmatch(string(b), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
					rel, _ := filepath.Rel(repoRoot, path)
					t.Errorf("%s links to %s, which does not exist", rel, target)
				}
			}
		}
	})
	t.Run("README install and quickstarts", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		readme := string(b)
		if regexp.MustCompile(`(?m)^\s*sudo\b`).MatchString(readme) {
			t.Errorf("README's commands use sudo: installing must work without root")
		}
		// Every curl follows the krait serve it talks to and must say it
		// runs in a second terminal (krait stays in the foreground).
		serve := regexp.MustCompile(`(?m)^krait serve `)
		curl := regexp.MustCompile(`(?m)^curl `)
		for _, c := range curl.FindAllStringIndex(readme, -1) {
			s := serve.FindAllStringIndex(readme[:c[0]], -1)
			if len(s) == 0 {
				continue
			}
			if between := readme[s[len(s)-1][0]:c[0]]; !strings.Contains(between, "second terminal") {
				t.Errorf("README runs curl right after krait serve without saying to use a second terminal:\n%s", between)
			}
		}
		for _, q := range []string{"### Flask", "### Django", "### FastAPI"} {
			i := strings.Index(readme, q)
			if i < 0 {
				t.Errorf("README lacks the %s quickstart", q)
				continue
			}
			section := readme[i:]
			if j := strings.Index(section[len(q):], "\n#"); j >= 0 {
				section = section[:len(q)+j]
			}
			if !strings.Contains(section, "second terminal") || !curl.MatchString(section) {
				t.Errorf("the %s quickstart does not show the curl to run in a second terminal", q)
			}
		}
	})
}

// repoTextFiles lists the repository's own text files (no .git, .venv,
// caches or build output).
func repoTextFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	skipDirs := map[string]bool{".git": true, ".venv": true, "__pycache__": true, "node_modules": true}
	exts := map[string]bool{".go": true, ".md": true, ".py": true, ".sh": true, ".txt": true, ".toml": true, ".cfg": true, ".yml": true, ".yaml": true, ".json": true, ".html": true, "": true}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !exts[filepath.Ext(path)] {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 4<<20 {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		t.Fatalf("walking the repository: %v", err)
	}
	return files
}
