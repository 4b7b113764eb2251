package systemd

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Credentials are the --user/--group krait drops to after binding.
type Credentials struct {
	UID, GID int
	// Groups are the user's supplementary groups (none with a numeric
	// --user that names no account).
	Groups []int
	// Name and Home are the account's, for USER/LOGNAME/HOME ("" when the
	// user was given as a number with no account).
	Name, Home string
}

// LookupCredentials resolves --user (a name or a uid) and --group (a name
// or a gid; default the user's primary group). Go's os/user reads
// /etc/passwd and /etc/group without cgo.
func LookupCredentials(userName, groupName string) (*Credentials, error) {
	c := &Credentials{}
	u, err := user.Lookup(userName)
	if err != nil {
		if id, perr := strconv.Atoi(userName); perr == nil && id >= 0 {
			u, err = user.LookupId(userName)
			if err != nil {
				// A bare uid with no account is allowed (containers).
				if groupName == "" {
					return nil, fmt.Errorf("--user %s: no such account, so its group is unknown: give --group too", userName)
				}
				u, err = &user.User{Uid: userName}, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("--user %s: %w", userName, err)
		}
	}
	if c.UID, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("--user %s: uid %q: %w", userName, u.Uid, err)
	}
	c.Name, c.Home = u.Username, u.HomeDir
	gid := u.Gid
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		switch {
		case err == nil:
			gid = g.Gid
		case isNumber(groupName):
			gid = groupName
		default:
			return nil, fmt.Errorf("--group %s: %w", groupName, err)
		}
	}
	if c.GID, err = strconv.Atoi(gid); err != nil {
		return nil, fmt.Errorf("--group %s: gid %q: %w", groupName, gid, err)
	}
	if u.Username != "" {
		ids, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("--user %s: supplementary groups: %w", userName, err)
		}
		for _, s := range ids {
			if id, err := strconv.Atoi(s); err == nil {
				c.Groups = append(c.Groups, id)
			}
		}
	}
	return c, nil
}

func isNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0
}

// Drop switches the whole process (every thread: Go applies setuid and
// friends to all of them on Linux) to c: supplementary groups, then the
// group, then the user, which must come last since it gives up the right
// to change the others. It then checks that root cannot be regained, and
// sets HOME, USER and LOGNAME to the account's, as systemd's User= does,
// so that the workers do not look for their caches in root's home.
func Drop(c *Credentials) error {
	groups := c.Groups
	if len(groups) == 0 {
		groups = []int{c.GID}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := syscall.Setgid(c.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", c.GID, err)
	}
	if err := syscall.Setuid(c.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", c.UID, err)
	}
	if c.UID != 0 {
		if err := syscall.Setuid(0); err == nil {
			return errors.New("dropping privileges: setuid(0) still succeeds afterwards")
		}
	}
	if c.Name != "" {
		_ = os.Setenv("USER", c.Name) // Setenv fails only on invalid names
		_ = os.Setenv("LOGNAME", c.Name)
	}
	if c.Home != "" {
		_ = os.Setenv("HOME", c.Home)
	}
	return nil
}

// Chown gives path (a unix socket krait bound) to c, as gunicorn does, so
// that the socket belongs to the account krait serves as.
func Chown(path string, c *Credentials) error {
	if err := os.Lchown(path, c.UID, c.GID); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}
