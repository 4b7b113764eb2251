package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// interpreter is what krait found out about the Python that runs the
// workers, for the start-up log and for import-error hints.
type interpreter struct {
	Path           string `json:"-"`              // as configured (--python, $VIRTUAL_ENV, PATH)
	Executable     string `json:"executable"`     // sys.executable
	Version        string `json:"version"`        // platform.python_version()
	Implementation string `json:"implementation"` // platform.python_implementation()
	Prefix         string `json:"prefix"`         // sys.prefix
	// VirtualEnv is sys.prefix when it differs from sys.base_prefix (a
	// venv or virtualenv), else "".
	VirtualEnv string `json:"virtualenv"`
}

// probeTimeout bounds the interpreter probe; a slow or hung interpreter
// only costs its log line, never the start.
const probeTimeout = 30 * time.Second

// probeMarker starts the probe's result line, so output from a
// sitecustomize or .pth file cannot be mistaken for it.
const probeMarker = "krait-python-probe "

const probeScript = `import json, platform, sys
base = getattr(sys, "base_prefix", getattr(sys, "real_prefix", sys.prefix))
print("` + probeMarker + `" + json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "prefix": sys.prefix,
    "virtualenv": sys.prefix if sys.prefix != base else "",
}))
`

// probePython runs the interpreter once to learn its version and whether
// it belongs to a virtualenv (the workers' HELLO does not carry either).
// It runs where the workers run (dir, env: the workers' extra
// environment), so the answer matches theirs.
func probePython(ctx context.Context, path, dir string, env []string) (interpreter, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-c", probeScript)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second // a child holding the pipes must not hang us
	out, err := cmd.Output()
	if err != nil {
		return interpreter{Path: path}, fmt.Errorf("running %s: %w (%s)", path, err, strings.TrimSpace(stderr.String()))
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(l, probeMarker); ok {
			line = rest
		}
	}
	in := interpreter{Path: path}
	if line == "" {
		return in, fmt.Errorf("%s printed no answer to the probe: is it a Python interpreter?", path)
	}
	if err := json.Unmarshal([]byte(line), &in); err != nil {
		return in, fmt.Errorf("%s: unreadable probe answer %q: %w", path, line, err)
	}
	in.Path = path
	return in, nil
}

// probeResult is the outcome of probePython.
type probeResult struct {
	in  interpreter
	err error
}

// hintWait bounds how long a boot-failure report waits for a probe that
// is still running: the report matters more than the hint.
const hintWait = 5 * time.Second

// awaitProbe returns the probe's outcome, or an unknown interpreter when
// it has not finished within hintWait.
func awaitProbe(probed <-chan probeResult, path string) probeResult {
	t := time.NewTimer(hintWait)
	defer t.Stop()
	select {
	case pr := <-probed:
		return pr
	case <-t.C:
		return probeResult{interpreter{Path: path}, fmt.Errorf("%s did not answer within %v", path, hintWait)}
	}
}

// logInterpreter names the interpreter in the start-up log.
func logInterpreter(log *slog.Logger, in interpreter, err error) {
	if err != nil {
		log.Warn("could not identify the Python interpreter", "python", in.Path, "err", err)
		return
	}
	venv := in.VirtualEnv
	if venv == "" {
		venv = "none"
	}
	log.Info("python", "path", in.Path, "executable", in.Executable,
		"version", in.Implementation+" "+in.Version, "virtualenv", venv)
	if !atLeast39(in.Version) {
		log.Warn("krait's worker adapter needs Python 3.9 or newer", "python", in.Path, "version", in.Version)
	}
}

// atLeast39 reports whether a "3.11.2"-style version is 3.9 or newer
// (an unparsable one is given the benefit of the doubt).
func atLeast39(v string) bool {
	var major, minor int
	if n, _ := fmt.Sscanf(v, "%d.%d", &major, &minor); n != 2 {
		return true
	}
	return major > 3 || major == 3 && minor >= 9
}

// describe is the interpreter in one phrase: "/usr/bin/python3 (CPython
// 3.11.2)".
func (in interpreter) describe() string {
	s := in.Path
	if in.Executable != "" && in.Executable != in.Path {
		s += " (" + in.Executable + ")"
	}
	if in.Version != "" {
		s += ", " + in.Implementation + " " + in.Version
	}
	return s
}

var moduleNotFoundRE = regexp.MustCompile(`ModuleNotFoundError: No module named '([^']+)'`)

// importHint explains a ModuleNotFoundError from the app's import: which
// interpreter ran and, when it is no virtualenv's, how to pick the one that
// has the app's packages. known is false when the probe failed. It returns
// "" for other errors.
func importHint(message string, in interpreter, known bool, chdir string) string {
	m := moduleNotFoundRE.FindAllStringSubmatch(message, -1)
	if m == nil {
		return ""
	}
	missing := m[len(m)-1][1]
	var b strings.Builder
	fmt.Fprintf(&b, "krait: the workers ran %s", in.describe())
	switch {
	case !known:
		b.WriteString(" (krait could not tell its version or virtualenv).\n")
	case in.VirtualEnv != "":
		fmt.Fprintf(&b, " from the virtualenv %s, which cannot import %q: install it there (%s -m pip install ...).\n", in.VirtualEnv, missing, in.Path)
		return b.String()
	default:
		fmt.Fprintf(&b, ", which is not in a virtualenv and cannot import %q.\n", missing)
	}
	b.WriteString("If the app's packages are installed in a virtualenv, run krait with that virtualenv's interpreter:\n")
	venv := findVenv(chdir)
	if venv != "" {
		fmt.Fprintf(&b, "    krait serve ... --python %s\n", filepath.Join(venv, "bin", "python"))
		fmt.Fprintf(&b, "or activate it first (. %s/bin/activate) so krait picks $VIRTUAL_ENV/bin/python.\n", venv)
	} else {
		b.WriteString("    krait serve ... --python /path/to/venv/bin/python\n")
		b.WriteString("or activate it first (. /path/to/venv/bin/activate) so krait picks $VIRTUAL_ENV/bin/python.\n")
	}
	return b.String()
}

// findVenv returns a virtualenv directory in dir (.venv, venv, env), the
// usual places, or "".
func findVenv(dir string) string {
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return ""
		}
	}
	for _, name := range []string{".venv", "venv", "env"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(filepath.Join(p, "pyvenv.cfg")); err == nil {
			return p
		}
	}
	return ""
}
