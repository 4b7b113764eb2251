package devreload

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSkipDir(t *testing.T) {
	for name, want := range map[string]bool{
		".git": true, "__pycache__": true, ".venv": true, "venv": true, "node_modules": true,
		".hidden": true, ".mypy_cache": true,
		"app": false, "templates": false, "venvs": false, "pkg.git": false,
	} {
		if got := SkipDir(name); got != want {
			t.Errorf("SkipDir(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestMatches(t *testing.T) {
	inc := []string{"*.html", "conf/*.toml"}
	for rel, want := range map[string]bool{
		"app.py":              true,
		"pkg/views.py":        true,
		"pkg/.views.py.swp":   false, // vim swap file
		".#app.py":            false, // emacs lock file
		"app.pyc":             false,
		"app.py~":             false,
		"templates/a.html":    true,
		"conf/krait.toml":     true,
		"other/krait.toml":    false,
		"notes.txt":           false,
		"4913":                false, // vim's write probe
		"templates/.a.html":   false,
		"pkg/sub/deep/mod.py": true,
	} {
		if got := Matches(rel, inc); got != want {
			t.Errorf("Matches(%q) = %v, want %v", rel, got, want)
		}
	}
	if Matches("notes.txt", nil) {
		t.Error("notes.txt matched without an include pattern")
	}
}

// fakeTimers hands out timers the test fires by hand.
type fakeTimers struct {
	made    chan chan time.Time // each new timer's channel, in order
	stopped chan struct{}
}

func (f *fakeTimers) new(time.Duration) Timer {
	c := make(chan time.Time, 1)
	f.made <- c
	return Timer{C: c, Stop: func() bool { f.stopped <- struct{}{}; return true }}
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestDebounceFiresOnceWithLastFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan string)
	fired := make(chan string, 10)
	ft := &fakeTimers{made: make(chan chan time.Time, 10), stopped: make(chan struct{}, 10)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Debounce(ctx, in, time.Hour, ft.new, func(f string) { fired <- f })
	}()

	in <- "a.py"
	first := recv(t, ft.made, "timer for the first event")
	in <- "b.py"
	recv(t, ft.stopped, "the first timer stopped by the second event")
	second := recv(t, ft.made, "timer for the second event")
	in <- "c.py"
	recv(t, ft.stopped, "the second timer stopped by the third event")
	third := recv(t, ft.made, "timer for the third event")

	// Stale timers firing must not trigger anything.
	first <- time.Now()
	second <- time.Now()
	select {
	case f := <-fired:
		t.Fatalf("a superseded timer fired the trigger with %q", f)
	default:
	}
	third <- time.Now()
	if f := recv(t, fired, "the trigger"); f != "c.py" {
		t.Fatalf("trigger got %q, want the last file c.py", f)
	}

	// A later change starts a new round: exactly one more trigger.
	in <- "d.py"
	fourth := recv(t, ft.made, "timer for the fourth event")
	fourth <- time.Now()
	if f := recv(t, fired, "the second trigger"); f != "d.py" {
		t.Fatalf("second trigger got %q, want d.py", f)
	}
	close(in)
	recv(t, done, "Debounce to return after its input closed")
	if len(fired) != 0 {
		t.Fatalf("%d extra triggers", len(fired))
	}
}

// TestWatcher drives a real inotify watcher: one trigger per burst of
// writes, for *.py and include matches only, in new directories too, never
// in skipped ones.
func TestWatcher(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"pkg", "__pycache__", ".git", "node_modules"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(Options{Dirs: []string{root}, Include: []string{"*.html"}, Debounce: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan string, 100)
	go w.Run(ctx, func(f string) { fired <- f })

	write := func(rel, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, rel), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A relevant change, then ignored ones: had an ignored one reached
	// the debouncer, a trigger would name it (with the first, as the last
	// file, or alone, before page.html's below).
	write("pkg/views.py", "v1")
	write("__pycache__/app.py", "x")
	write(".git/hook.py", "x")
	write("node_modules/x.py", "x")
	write("notes.txt", "x")
	write(".app.py.swp", "x")
	if f := recv(t, fired, "a trigger for pkg/views.py"); f != filepath.Join(root, "pkg/views.py") {
		t.Fatalf("trigger named %q, want pkg/views.py", f)
	}
	write("page.html", "x")
	if f := recv(t, fired, "a trigger for page.html"); f != filepath.Join(root, "page.html") {
		t.Fatalf("trigger named %q, want page.html", f)
	}
	// A directory created after start is watched.
	if err := os.MkdirAll(filepath.Join(root, "newpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The mkdir alone triggers nothing (no code in it); wait until the
	// watch is in place by polling with writes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		write("newpkg/mod.py", "x")
		select {
		case f := <-fired:
			if f != filepath.Join(root, "newpkg/mod.py") {
				t.Fatalf("trigger named %q, want newpkg/mod.py", f)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a write in a directory created after start never triggered")
		}
	}
}
