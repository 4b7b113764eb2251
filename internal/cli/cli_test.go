package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"help"}, 0, "krait serve MODULE:CALLABLE", ""},
		{[]string{"--help"}, 0, "Usage:", ""},
		{[]string{"version"}, 0, "krait ", ""},
		{[]string{"frob"}, 2, "", `unknown command "frob"`},
		{[]string{"serve", "--help"}, 0, "--graceful-timeout", ""},
		{[]string{"help", "serve"}, 0, "--max-queue", ""},
		{[]string{"serve"}, 2, "", "MODULE:CALLABLE"},
		{[]string{"serve", "app:app", "--workers", "0"}, 2, "", "--workers: 0 is out of range"},
		{[]string{"serve", "app:app", "--bogus"}, 2, "", "--bogus: unknown flag"},
	} {
		var out, errOut strings.Builder
		code := Run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errOut.String())
		}
		if !strings.Contains(out.String(), tc.inStdout) {
			t.Errorf("%v: stdout %q lacks %q", tc.args, out.String(), tc.inStdout)
		}
		if !strings.Contains(errOut.String(), tc.inStderr) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errOut.String(), tc.inStderr)
		}
	}
}

func TestImportHint(t *testing.T) {
	const missing = "Traceback (most recent call last):\n  File \"x.py\", line 1\nModuleNotFoundError: No module named 'flask'\n"
	sys := interpreter{Path: "/usr/bin/python3", Executable: "/usr/bin/python3", Version: "3.11.2", Implementation: "CPython", Prefix: "/usr"}
	venv := sys
	venv.Path, venv.Executable, venv.Prefix, venv.VirtualEnv = "/srv/.venv/bin/python", "/srv/.venv/bin/python", "/srv/.venv", "/srv/.venv"

	if h := importHint("RuntimeError: boom", sys, true, t.TempDir()); h != "" {
		t.Errorf("hint for a non-import error: %q", h)
	}
	h := importHint(missing, sys, true, t.TempDir())
	for _, want := range []string{"/usr/bin/python3", "CPython 3.11.2", "not in a virtualenv", `"flask"`, "--python", "activate"} {
		if !strings.Contains(h, want) {
			t.Errorf("system interpreter: hint lacks %q:\n%s", want, h)
		}
	}
	h = importHint(missing, venv, true, t.TempDir())
	if !strings.Contains(h, "/srv/.venv") || strings.Contains(h, "activate") || strings.Contains(h, "--python") {
		t.Errorf("virtualenv interpreter: hint should name the venv and not suggest another:\n%s", h)
	}
	h = importHint(missing, interpreter{Path: "/opt/py"}, false, t.TempDir())
	if !strings.Contains(h, "/opt/py") || !strings.Contains(h, "--python") {
		t.Errorf("unknown interpreter: %q", h)
	}

	// A virtualenv in the app's directory is named in the advice.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".venv", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".venv", "pyvenv.cfg"), []byte("home = /usr/bin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h = importHint(missing, sys, true, dir)
	if want := "--python " + filepath.Join(dir, ".venv", "bin", "python"); !strings.Contains(h, want) {
		t.Errorf("hint lacks %q:\n%s", want, h)
	}
}

func TestAtLeast39(t *testing.T) {
	for v, want := range map[string]bool{"3.9.0": true, "3.13.1": true, "3.8.18": false, "2.7.18": false, "4.0": true, "weird": true} {
		if got := atLeast39(v); got != want {
			t.Errorf("atLeast39(%q) = %v", v, got)
		}
	}
}

func TestProbePythonNotPython(t *testing.T) {
	// An executable that is no Python: the probe says so instead of
	// inventing an answer.
	fake := filepath.Join(t.TempDir(), "python")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := probePython(context.Background(), fake, "", nil); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("err = %v", err)
	}
}
