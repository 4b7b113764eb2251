package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The operating-system integration flags (--pid, --user, --group,
// --uds-mode) and BindGiven.
func TestParseServeOSFlags(t *testing.T) {
	s, err := parse([]string{"app:app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.BindGiven || s.PIDFile != "" || s.User != "" || s.Group != "" || s.UDSMode != nil {
		t.Fatalf("defaults: BindGiven=%v PIDFile=%q User=%q Group=%q UDSMode=%v", s.BindGiven, s.PIDFile, s.User, s.Group, s.UDSMode)
	}
	s, err = parse([]string{"app:app", "-b", DefaultBind, "--pid", "run/k.pid", "--user", "www-data", "--group", "www", "--uds-mode", "0660"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if !s.BindGiven || s.PIDFile != filepath.Join(wd, "run/k.pid") || s.User != "www-data" || s.Group != "www" || s.UDSMode == nil || *s.UDSMode != 0o660 {
		t.Fatalf("parsed: BindGiven=%v PIDFile=%q User=%q Group=%q UDSMode=%v", s.BindGiven, s.PIDFile, s.User, s.Group, s.UDSMode)
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--group", "www"}, "--group: needs --user"},
		{[]string{"--uds-mode", "0999"}, `--uds-mode: "0999" is not octal`},
		{[]string{"-uds-mode", "1777"}, `-uds-mode: "1777" is not octal`},
		{[]string{"--uds-mode", "rw"}, `--uds-mode: "rw" is not octal`},
	} {
		_, err := parse(append([]string{"app:app"}, tc.args...), nil)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.msg)
		}
	}
}
