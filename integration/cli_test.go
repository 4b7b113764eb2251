package integration

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// bootExitLimit bounds how long krait may take to give up on an app that
// cannot be imported ("within seconds"; generous for a busy machine).
const bootExitLimit = 45 * time.Second

func TestBootFailures(t *testing.T) {
	python := testPython(t)
	tests := []struct {
		name string
		app  string
		want []*regexp.Regexp // all must match stderr
	}{
		{"syntax error", "syntax_error:application", []*regexp.Regexp{
			regexp.MustCompile(`SyntaxError`), regexp.MustCompile(`syntax_error\.py`)}},
		{"missing module", "no_such_module_xyz:application", []*regexp.Regexp{
			regexp.MustCompile(`ModuleNotFoundError`), regexp.MustCompile(`no_such_module_xyz`), regexp.MustCompile(`Traceback`)}},
		{"exception at import", "raises:application", []*regexp.Regexp{
			regexp.MustCompile(`RuntimeError: raised-at-import-marker`), regexp.MustCompile(`Traceback`)}},
		{"missing callable", "nocallable:application", []*regexp.Regexp{
			regexp.MustCompile(`AttributeError|has no attribute|cannot find|not found`), regexp.MustCompile(`application`)}},
		{"not callable", "notcallable:application", []*regexp.Regexp{
			regexp.MustCompile(`(?i)not callable|callable`)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runKrait(t, bootExitLimit, "serve", tc.app,
				"--chdir", testdataDir("bootfail"), "-b", "127.0.0.1:0", "--python", python)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			for _, re := range tc.want {
				if !re.MatchString(stderr) {
					t.Errorf("stderr lacks %q", re)
				}
			}
			if regexp.MustCompile(`msg=ready\b`).MatchString(stderr) {
				t.Errorf("krait said ready for an app that cannot load")
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", stderr)
			}
		})
	}
	// The syntax error case must show Python's traceback-style report too.
	t.Run("traceback shown", func(t *testing.T) {
		_, _, stderr := runKrait(t, bootExitLimit, "serve", "raises:application",
			"--chdir", testdataDir("bootfail"), "-b", "127.0.0.1:0", "--python", python)
		if !strings.Contains(stderr, `raises.py", line 3`) {
			t.Errorf("stderr lacks the failing file and line:\n%s", stderr)
		}
	})
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		flag string // must appear in stderr
	}{
		{[]string{"--workers", "0"}, "--workers"},
		{[]string{"-w", "-3"}, "-w: "},
		{[]string{"--workers", "many"}, "workers"},
		{[]string{"--threads", "0"}, "--threads"},
		{[]string{"--bind", "nonsense"}, "--bind"},
		{[]string{"-b", "127.0.0.1:99999"}, "-b: "},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--interface", "cgi"}, "--interface"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--graceful-timeout", "-1"}, "--graceful-timeout"},
		{[]string{"--max-queue", "-1"}, "--max-queue"},
		{[]string{"--limit-request-line", "-5"}, "--limit-request-line"},
		{[]string{"--env", "NOEQUALS"}, "--env"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"serve", "app:application"}, tc.args...)
			code, _, stderr := runKrait(t, 30*time.Second, args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.Contains(stderr, tc.flag) {
				t.Errorf("stderr does not name %s:\n%s", tc.flag, stderr)
			}
		})
	}
	t.Run("no app", func(t *testing.T) {
		code, _, stderr := runKrait(t, 30*time.Second, "serve")
		if code != 2 || !strings.Contains(stderr, "MODULE:CALLABLE") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		code, _, _ := runKrait(t, 30*time.Second, "frobnicate")
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
	})
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"version"}, "krait "},
		{[]string{"--help"}, "krait serve"},
		{[]string{"serve", "--help"}, "--bind"},
		{[]string{"help", "serve"}, "--workers"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runKrait(t, 30*time.Second, tc.args...)
			if code != 0 || !strings.Contains(stdout, tc.want) {
				t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, stdout, tc.want, stderr)
			}
		})
	}
}
