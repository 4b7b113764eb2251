package config

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fakeLookPath(name string) (string, error) {
	switch name {
	case "python3":
		return "/usr/bin/python3", nil
	case "/venv/bin/python", "/opt/pypy/bin/pypy3":
		return name, nil
	}
	return "", errors.New("not found")
}

func parse(args []string, env map[string]string) (*Serve, error) {
	return ParseServe(args, io.Discard, func(k string) string { return env[k] }, fakeLookPath)
}

func TestParseServeDefaults(t *testing.T) {
	s, err := parse([]string{"mysite.wsgi:application"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.App != "mysite.wsgi:application" || s.Workers != 1 || s.Threads != 1 || s.Interface != "auto" {
		t.Fatalf("unexpected defaults: %+v", s)
	}
	if len(s.Binds) != 1 || s.Binds[0] != (Bind{"tcp4", "127.0.0.1:8000"}) {
		t.Fatalf("default bind: %+v", s.Binds)
	}
	if s.Python != "/usr/bin/python3" || s.GracefulTimeout != 30*time.Second || s.MaxQueue != 1024 {
		t.Fatalf("defaults: %+v", s)
	}
	if s.LimitRequestLine != 4094 || s.LimitRequestFields != 100 || s.LimitRequestFieldSize != 8190 || s.LogLevel != slog.LevelInfo {
		t.Fatalf("limits: %+v", s)
	}
}

func TestParseServeFlags(t *testing.T) {
	s, err := parse([]string{"-b", "0.0.0.0:80", "app:wsgi", "--bind", "[::1]:9000", "-b", "unix:/tmp/k.sock",
		"-w", "4", "--threads=8", "--env", "A=1", "--env", "B=x=y", "--graceful-timeout", "2.5",
		"--log-level", "WARNING", "--interface", "wsgi", "--keep-alive", "1m", "--python", "/opt/pypy/bin/pypy3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Bind{{"tcp4", "0.0.0.0:80"}, {"tcp6", "[::1]:9000"}, {"unix", "/tmp/k.sock"}}
	if len(s.Binds) != 3 || s.Binds[0] != want[0] || s.Binds[1] != want[1] || s.Binds[2] != want[2] {
		t.Fatalf("binds %+v", s.Binds)
	}
	if s.Workers != 4 || s.Threads != 8 || s.GracefulTimeout != 2500*time.Millisecond || s.LogLevel != slog.LevelWarn {
		t.Fatalf("%+v", s)
	}
	if strings.Join(s.Env, ";") != "A=1;B=x=y" || s.KeepAlive != time.Minute || s.Python != "/opt/pypy/bin/pypy3" {
		t.Fatalf("%+v", s)
	}
}

func TestParseServeVirtualEnv(t *testing.T) {
	s, err := parse([]string{"app"}, map[string]string{"VIRTUAL_ENV": "/venv"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Python != "/venv/bin/python" {
		t.Fatalf("python = %s", s.Python)
	}
}

func TestParseServeErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{}, "MODULE:CALLABLE"},
		{[]string{"a:b", "c:d"}, "c:d"},
		{[]string{"a:"}, "MODULE:CALLABLE"},
		{[]string{"a:b", "--workers", "0"}, "--workers"},
		{[]string{"a:b", "-w", "many"}, "-w"},
		{[]string{"a:b", "--threads", "-1"}, "--threads"},
		{[]string{"a:b", "--prefetch", "-1"}, "--prefetch"},
		{[]string{"a:b", "--prefetch", "1001"}, "--prefetch"},
		{[]string{"a:b", "--bind", "nonsense"}, "--bind"},
		{[]string{"a:b", "--bind", "127.0.0.1:99999"}, "--bind"},
		{[]string{"a:b", "--bind", "unix:"}, "--bind"},
		{[]string{"a:b", "--interface", "cgi"}, "--interface"},
		{[]string{"a:b", "--log-level", "loud"}, "--log-level"},
		{[]string{"a:b", "--loop", "trio"}, "--loop"},
		{[]string{"a:b", "--lifespan", "maybe"}, "--lifespan"},
		{[]string{"a:b", "--limit-concurrency", "-1"}, "--limit-concurrency"},
		{[]string{"a:b", "--ws-max-size", "0"}, "--ws-max-size"},
		{[]string{"a:b", "--ws-ping-interval", "-2"}, "--ws-ping-interval"},
		{[]string{"a:b", "--graceful-timeout", "soon"}, "--graceful-timeout"},
		{[]string{"a:b", "--max-queue", "-3"}, "--max-queue"},
		{[]string{"a:b", "--env", "NOVALUE"}, "--env"},
		{[]string{"a:b", "--limit-request-line", "1"}, "--limit-request-line"},
		{[]string{"a:b", "--python", "/nope/python"}, "--python"},
		{[]string{"a:b", "--chdir", "/definitely/not/here"}, "--chdir"},
		{[]string{"a:b", "--frobnicate"}, "--frobnicate"},
		{[]string{"a:b", "--workers"}, "--workers"},
		// Flags are named as written: one dash, two dashes, shorthand,
		// "=value" form, and the occurrence at fault of a repeated flag.
		{[]string{"a:b", "-c", "conf.py"}, "-c"},
		{[]string{"a:b", "--c"}, "--c"},
		{[]string{"a:b", "-w", "0"}, "-w"},
		{[]string{"a:b", "-workers", "0"}, "-workers"},
		{[]string{"a:b", "--workers=0"}, "--workers"},
		{[]string{"a:b", "-w=x"}, "-w"},
		{[]string{"a:b", "-threads"}, "-threads"},
		{[]string{"a:b", "-w", "99999999999999999999"}, "-w"},
		{[]string{"a:b", "--ws-per-message-deflate=maybe"}, "--ws-per-message-deflate"},
		{[]string{"a:b", "-ws-per-message-deflate=maybe"}, "-ws-per-message-deflate"},
		{[]string{"a:b", "-b", "nonsense"}, "-b"},
		{[]string{"a:b", "--bind", "127.0.0.1:1", "-b", "nonsense"}, "-b"},
		{[]string{"a:b", "-b", "nonsense", "--bind", "127.0.0.1:1"}, "-b"},
		{[]string{"a:b", "-bind", "127.0.0.1:1", "--bind", "x"}, "--bind"},
		{[]string{"a:b", "--env", "A=1", "-env", "NOVALUE"}, "-env"},
		{[]string{"a:b", "-log-level", "loud"}, "-log-level"},
		{[]string{"-interface", "cgi", "a:b"}, "-interface"},
		{[]string{"a:b", "---x"}, "---x"},
		// A value that looks like a flag is a value, not a spelling.
		{[]string{"a:b", "--env", "-w", "-w", "0"}, "-w"},
		{[]string{"a:b", "--chdir", "-threads", "--threads", "0"}, "--threads"},
	} {
		_, err := parse(tc.args, nil)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: want UsageError, got %v", tc.args, err)
			continue
		}
		if ue.Flag != tc.flag {
			t.Errorf("%v: error names %q, want %q (%v)", tc.args, ue.Flag, tc.flag, err)
		}
	}
}

func TestParseBindFamily(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"127.0.0.1:8000", "tcp4", "127.0.0.1:8000"},
		{"0.0.0.0:80", "tcp4", "0.0.0.0:80"},
		{"[::1]:80", "tcp6", "[::1]:80"},
		{"[fe80::1%lo]:80", "tcp6", "[fe80::1%lo]:80"},
		{"[::]:80", "tcp", "[::]:80"},
		{"[::ffff:127.0.0.1]:80", "tcp", "[::ffff:127.0.0.1]:80"},
		{"localhost:80", "tcp", "localhost:80"},
		{":80", "tcp", ":80"},
		{"unix:/tmp/k.sock", "unix", "/tmp/k.sock"},
	} {
		b, err := ParseBind(tc.in)
		if err != nil || b.Network != tc.network || b.Address != tc.addr {
			t.Errorf("ParseBind(%q) = %+v, %v; want {%s %s}", tc.in, b, err, tc.network, tc.addr)
		}
	}
}

func TestDefaultIsWhatParseServeUses(t *testing.T) {
	s, err := parse([]string{"app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	// The fields ParseServe fills in from elsewhere.
	d.App, d.Binds, d.Python = s.App, s.Binds, s.Python
	if !reflect.DeepEqual(*s, d) {
		t.Fatalf("ParseServe without flags:\n%+v\nDefault():\n%+v", *s, d)
	}
	if len(s.Binds) != 1 || s.Binds[0].String() != DefaultBind {
		t.Fatalf("binds %v, want %s", s.Binds, DefaultBind)
	}
	// The help shows the same defaults.
	var out strings.Builder
	if _, err := ParseServe([]string{"--help"}, &out, nil, fakeLookPath); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	for _, want := range []string{"(default " + DefaultBind + ")", "(default 120)", "(default 1024)", "(default info)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseServeHelp(t *testing.T) {
	var out strings.Builder
	_, err := ParseServe([]string{"--help"}, &out, nil, fakeLookPath)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "--bind") || !strings.Contains(out.String(), "Usage: krait serve") {
		t.Fatalf("help text:\n%s", out.String())
	}
}

func TestParseServeStatic(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	file := dir + "/f.txt"
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := parse([]string{"app", "--static", "/static=" + dir, "-static", "/media/=" + other, "--static-max-age", "60"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []StaticMount{{"/static", dir}, {"/media", other}}
	if !reflect.DeepEqual(s.Static, want) || s.StaticMaxAge != time.Minute {
		t.Fatalf("Static %+v, StaticMaxAge %v; want %+v, 1m", s.Static, s.StaticMaxAge, want)
	}
	if s, err := parse([]string{"app"}, nil); err != nil || s.StaticMaxAge != time.Hour || s.Static != nil {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
	for _, tc := range []struct {
		args   []string
		flag   string
		reason string
	}{
		{[]string{"--static", "static=" + dir}, "--static", "must start with '/'"},
		{[]string{"--static", "/static"}, "--static", "is not URL_PREFIX=DIR"},
		{[]string{"--static", "/static="}, "--static", "is not URL_PREFIX=DIR"},
		{[]string{"--static", "/=" + dir}, "--static", "would hide the app"},
		{[]string{"--static", "/st%61tic=" + dir}, "--static", "contains '%'"},
		{[]string{"--static", "/a/../b=" + dir}, "--static", "segment"},
		{[]string{"--static", "/a//b=" + dir}, "--static", "segment"},
		{[]string{"--static", "/a b=" + dir}, "--static", "whitespace"},
		{[]string{"--static", "/static=" + dir + "/missing"}, "--static", "no such file or directory"},
		{[]string{"--static", "/static=" + file}, "--static", "is not a directory"},
		{[]string{"--static", "/s=" + dir, "-static", "/s/=" + other}, "-static", "already served from " + dir},
		{[]string{"--static-max-age", "-1"}, "--static-max-age", "seconds >= 0"},
		{[]string{"-static-max-age", "soon"}, "-static-max-age", "seconds >= 0"},
	} {
		_, err := parse(append([]string{"app"}, tc.args...), nil)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Flag != tc.flag || !strings.Contains(ue.Reason, tc.reason) {
			t.Errorf("%q: got %v; want a UsageError naming %s with %q", tc.args, err, tc.flag, tc.reason)
		}
	}
}
