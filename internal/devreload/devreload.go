package devreload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long after the last change a reload starts.
const DefaultDebounce = 200 * time.Millisecond

// Options configures a Watcher.
type Options struct {
	// Dirs are the roots watched recursively (--chdir, --pythonpath).
	Dirs []string
	// Include holds extra glob patterns (filepath.Match syntax) a file's
	// base name or root-relative path may match; *.py always matches.
	Include []string
	// Debounce is the quiet time after the last event before the
	// trigger runs (DefaultDebounce when 0).
	Debounce time.Duration
	Log      *slog.Logger
}

// Watcher watches Options.Dirs; create it with New, run it with Run.
type Watcher struct {
	opt   Options
	fsw   *fsnotify.Watcher
	roots []string
}

// skipDirs are directory names never watched: they hold no app code, or
// change on their own (bytecode caches) and would cause reload loops.
var skipDirs = map[string]bool{
	".git": true, "__pycache__": true, ".venv": true, "venv": true, "node_modules": true,
}

// SkipDir reports whether a directory with this base name is not watched.
func SkipDir(name string) bool {
	return skipDirs[name] || (strings.HasPrefix(name, ".") && name != "." && name != "..")
}

// Matches reports whether a changed file (rel is its path relative to
// the watched root, slash- or OS-separated) triggers a reload: *.py or an
// include pattern, never a hidden file (editor swap and backup files).
func Matches(rel string, include []string) bool {
	base := filepath.Base(rel)
	if strings.HasPrefix(base, ".") {
		return false
	}
	if strings.HasSuffix(base, ".py") {
		return true
	}
	for _, p := range include {
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
		if ok, _ := filepath.Match(p, filepath.ToSlash(rel)); ok {
			return true
		}
	}
	return false
}

// ValidPattern reports a malformed --reload-include glob.
func ValidPattern(p string) error {
	if _, err := filepath.Match(p, ""); err != nil {
		return fmt.Errorf("bad glob %q: %w", p, err)
	}
	return nil
}

// New starts watching opt.Dirs recursively.
func New(opt Options) (*Watcher, error) {
	if opt.Debounce <= 0 {
		opt.Debounce = DefaultDebounce
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("reload: starting the file watcher: %w", err)
	}
	w := &Watcher{opt: opt, fsw: fsw}
	for _, d := range opt.Dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			fsw.Close()
			return nil, fmt.Errorf("reload: %w", err)
		}
		w.roots = append(w.roots, abs)
		if _, err := w.addTree(abs); err != nil {
			fsw.Close()
			return nil, err
		}
	}
	return w, nil
}

// Close stops watching; a nil Watcher (no --reload) is fine.
func (w *Watcher) Close() error {
	if w == nil {
		return nil
	}
	return w.fsw.Close()
}

// addTree watches dir and its subdirectories (SkipDir ones excepted); it
// returns a matching file found in the tree, if any, so that a directory
// that appears with code in it (a checkout, mv) counts as a change.
func (w *Watcher) addTree(dir string) (found string, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return fmt.Errorf("reload: watching %s: %w", dir, err)
			}
			return nil // vanished or unreadable below the root: not ours to fail on
		}
		if d.IsDir() {
			if path != dir && SkipDir(d.Name()) {
				return filepath.SkipDir
			}
			if err := w.fsw.Add(path); err != nil {
				if path == dir {
					return fmt.Errorf("reload: watching %s: %w", dir, err)
				}
				w.opt.Log.Warn("reload: cannot watch directory", "dir", path, "err", err)
			}
			return nil
		}
		if found == "" && Matches(w.rel(path), w.opt.Include) {
			found = path
		}
		return nil
	})
	return found, err
}

// rel is path relative to the root that holds it.
func (w *Watcher) rel(path string) string {
	for _, r := range w.roots {
		if rel, err := filepath.Rel(r, path); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return path
}

// relevant filters one inotify event into a changed file ("" if none),
// watching a new directory on the way.
func (w *Watcher) relevant(ev fsnotify.Event) string {
	if ev.Op == fsnotify.Chmod {
		return "" // touch -a, permission changes: the code did not change
	}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			if SkipDir(filepath.Base(ev.Name)) {
				return ""
			}
			found, err := w.addTree(ev.Name)
			if err != nil {
				w.opt.Log.Warn("reload: cannot watch new directory", "dir", ev.Name, "err", err)
			}
			return found
		}
	}
	if Matches(w.rel(ev.Name), w.opt.Include) {
		return ev.Name
	}
	return ""
}

// Run delivers changes to trigger, debounced, until ctx ends or the
// watcher is closed.
func (w *Watcher) Run(ctx context.Context, trigger func(file string)) {
	files := make(chan string)
	go func() {
		defer close(files)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.fsw.Events:
				if !ok {
					return
				}
				if f := w.relevant(ev); f != "" {
					select {
					case files <- f:
					case <-ctx.Done():
						return
					}
				}
			case err, ok := <-w.fsw.Errors:
				if !ok {
					return
				}
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					// Events were lost: something changed, reload to be safe.
					select {
					case files <- "(inotify queue overflow)":
					case <-ctx.Done():
						return
					}
					continue
				}
				w.opt.Log.Warn("reload: file watcher error", "err", err)
			}
		}
	}()
	Debounce(ctx, files, w.opt.Debounce, realTimer, trigger)
}

// Timer is a started timer: its channel and its stop function.
type Timer struct {
	C    <-chan time.Time
	Stop func() bool
}

func realTimer(d time.Duration) Timer {
	t := time.NewTimer(d)
	return Timer{C: t.C, Stop: t.Stop}
}

// Debounce calls fire(last file) once in events stopped arriving for d:
// each event restarts the wait (newTimer is injectable for tests). It
// returns when ctx ends or in closes; a pending change is then dropped.
func Debounce(ctx context.Context, in <-chan string, d time.Duration, newTimer func(time.Duration) Timer, fire func(string)) {
	var (
		pending string
		timer   Timer
		timerC  <-chan time.Time // nil (blocks) when nothing is pending
	)
	stop := func() {
		if timerC != nil {
			timer.Stop()
			timerC = nil
		}
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f, ok := <-in:
			if !ok {
				return
			}
			pending = f
			stop()
			timer = newTimer(d)
			timerC = timer.C
		case <-timerC:
			timerC = nil
			fire(pending)
			pending = ""
		}
	}
}
