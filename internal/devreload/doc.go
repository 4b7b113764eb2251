// Package devreload watches an application's source tree during
// development (krait serve --reload) and asks for a reload when a file
// changes.
//
// It watches directories recursively with inotify (through
// github.com/fsnotify/fsnotify): every *.py file, plus files whose base
// name (or path relative to a watched root) matches an --reload-include
// glob. Directories named .git, __pycache__, .venv, venv, node_modules and
// every hidden directory (a name starting with '.') are skipped, and so
// are hidden files (editor swap files). Directories created after start
// are watched as they appear.
//
// Events are debounced: the trigger runs once, Debounce after the last
// relevant event, with the last file that changed. An editor's save (write,
// rename, chmod, ...) is thus one reload. The trigger itself must not
// block for long; krait's server passes the file to the same reload path
// as SIGHUP (a new generation of workers; one that fails to import is
// abandoned with its traceback logged and the old one keeps serving), so
// a syntax error while editing is recovered by the next save.
//
// Locking: a Watcher is used by one goroutine (Run); Close may be called
// from any goroutine, once Run has returned or to stop it.
package devreload
