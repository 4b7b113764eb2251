package static

import (
	"os"
	"syscall"
)

// ctime is the file's status change time in nanoseconds (0 where the
// system does not say). Every write, truncation and utimes(2) moves it,
// and no one can set it back: a file rewritten in place with its size
// and mtime restored (cp -p, rsync -t, tar x of a same-sized file) keeps
// its inode, size and mtime, but not its ctime.
func ctime(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}
