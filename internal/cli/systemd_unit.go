package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/systemd"
	"github.com/krait-server/krait/internal/version"
)

const systemdUnitUsage = `Usage: krait systemd-unit [--socket] [--unit-name NAME] [--watchdog-sec N] MODULE:CALLABLE [serve flags]

Prints a ready-to-install systemd service unit that runs
'krait serve MODULE:CALLABLE [serve flags]' (Type=notify, with the watchdog),
with this krait's absolute path, the interpreter resolved now and the current
directory as WorkingDirectory=. The serve flags are checked as krait serve
checks them.

  --socket          also print a socket unit, after the service unit and a line
                    "# ---- NAME.socket": one ListenStream= per --bind, which
                    krait then inherits (socket activation)
  --unit-name NAME  the units' name (default krait)
  --watchdog-sec N  WatchdogSec= in seconds (default 30; 0 = no watchdog)
`

// systemdUnit runs `krait systemd-unit`.
func systemdUnit(args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "krait systemd-unit: %v\nRun 'krait systemd-unit --help' for usage.\n", err)
		return 2
	}
	o := systemd.UnitOptions{Name: "krait", Watchdog: 30 * time.Second, Version: version.String()}
	var serveArgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			serveArgs = append(serveArgs, a)
			continue
		}
		takeValue := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s: needs a value", a)
			}
			i++
			return args[i], nil
		}
		switch name {
		case "h", "help":
			fmt.Fprint(stdout, systemdUnitUsage)
			return 0
		case "socket":
			if hasValue && value != "true" {
				return fail(fmt.Errorf("%s: takes no value", a))
			}
			o.Socket = true
		case "unit-name":
			v, err := takeValue()
			if err != nil {
				return fail(err)
			}
			if v == "" || strings.ContainsAny(v, "/ \t\n%$\\") || strings.HasSuffix(v, ".service") {
				return fail(fmt.Errorf("%s: %q is not a unit name (give it without .service)", a, v))
			}
			o.Name = v
		case "watchdog-sec":
			v, err := takeValue()
			if err != nil {
				return fail(err)
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fail(fmt.Errorf("%s: %q is not a whole number of seconds", a, v))
			}
			o.Watchdog = time.Duration(n) * time.Second
		default:
			serveArgs = append(serveArgs, a)
		}
	}

	cfg, err := config.ParseServe(serveArgs, io.Discard, nil, nil)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(stdout, systemdUnitUsage)
		return 0
	}
	if err != nil {
		return fail(err)
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fail(fmt.Errorf("finding krait's own path: %w", err))
	}
	wd, err := os.Getwd()
	if err != nil {
		return fail(fmt.Errorf("the current directory: %w", err))
	}
	o.Exec = exe
	o.WorkingDirectory = wd
	// The interpreter as resolved now (from --python, $VIRTUAL_ENV or
	// PATH): systemd runs the unit with neither this PATH nor VIRTUAL_ENV.
	o.Args = append([]string{"serve"}, withoutFlag(serveArgs, "python")...)
	o.Args = append(o.Args, "--python", cfg.Python)
	o.App = cfg.App
	o.GracefulTimeout, o.ShutdownDelay, o.BootTimeout = cfg.GracefulTimeout, cfg.ShutdownDelay, cfg.BootTimeout
	o.Binds, o.UDSMode = cfg.Binds, cfg.UDSMode

	out := systemd.Unit(o)
	if o.Socket {
		sock, err := systemd.SocketUnit(o)
		if err != nil {
			return fail(err)
		}
		out += "\n# ---- " + o.Name + ".socket\n" + sock
	}
	fmt.Fprint(stdout, out)
	return 0
}

// withoutFlag drops every occurrence of the value flag name ("-name V",
// "--name V", "--name=V") from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-"+name || a == "--"+name:
			i++ // and its value
		case strings.HasPrefix(a, "-"+name+"=") || strings.HasPrefix(a, "--"+name+"="):
		default:
			out = append(out, a)
		}
	}
	return out
}

// logFiles picks the reopenable log files (not stdout/stderr) among ws.
func logFiles(ws ...io.Writer) []*systemd.LogFile {
	var fs []*systemd.LogFile
	for _, w := range ws {
		if f, ok := w.(*systemd.LogFile); ok {
			fs = append(fs, f)
		}
	}
	return fs
}
