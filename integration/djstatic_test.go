package integration

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Django's STATIC_URL → STATIC_ROOT (and MEDIA_URL → MEDIA_ROOT with
// --serve-media) served by krait's static handler without --static: the
// worker reports the settings in HELLO's 8th item (docs/protocol.md,
// Handshake) and krait mounts them when it builds its routes.

// collectDjangoStatic runs testdata/djangosite's collectstatic into a
// fresh directory and returns it.
func collectDjangoStatic(t *testing.T, python string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "static")
	ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "manage.py", "collectstatic", "--noinput", "-v0")
	cmd.Dir = testdataDir("djangosite")
	cmd.Env = append(os.Environ(), "DJANGOSITE_DATA_DIR="+t.TempDir(), "DJANGOSITE_STATIC_ROOT="+root)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("manage.py collectstatic: %v\n%s", err, out)
	}
	return root
}

// startDjango starts krait on the djangosite app (interface "wsgi" or
// "asgi") with STATIC_ROOT=staticRoot and extra flags.
func startDjango(t *testing.T, iface, staticRoot string, extra ...string) *Krait {
	t.Helper()
	args := []string{"krsite." + iface + ":application", "--chdir", testdataDir("djangosite"),
		"--env", "DJANGOSITE_DATA_DIR=" + t.TempDir(), "--env", "DJANGOSITE_STATIC_ROOT=" + staticRoot}
	k := startKrait(t, []string{"django"}, append(args, extra...)...)
	k.Forbid("Traceback", "level=ERROR")
	return k
}

// appSaw asks the app for /djstatic-probe/ and returns the requests the
// Django app logged up to and including it: the probe comes last in the
// worker's stderr, so every earlier request that reached the app is in.
func appSaw(t *testing.T, k *Krait) []string {
	t.Helper()
	getFromApp(t, k, "/djstatic-probe/")
	k.MustWaitLog(regexp.MustCompile(`djangosite request GET /djstatic-probe/\n`))
	return appRequests(k.Log())
}

// getFromApp GETs path, which must reach Django: over plain HTTP the
// site answers 301 to https (SECURE_SSL_REDIRECT), not followed here.
func getFromApp(t *testing.T, k *Krait, path string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * ioTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(k.URL(path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Fatalf("GET %s: status %d Location %q, want Django's 301 to https", path, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// hashedBaseCSS is collectstatic's content-hashed copy of admin/css/base.css
// (from staticfiles.json), relative to root.
func hashedBaseCSS(t *testing.T, root string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(root, "admin", "css", "base.*.css"))
	if len(m) != 1 {
		t.Fatalf("collectstatic wrote %d hashed admin/css/base.*.css into %s, want 1", len(m), root)
	}
	rel, err := filepath.Rel(root, m[0])
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

func TestDjangoStaticServed(t *testing.T) {
	python := testPython(t, "django")
	root := collectDjangoStatic(t, python)
	hashed := hashedBaseCSS(t, root)
	want, err := os.ReadFile(filepath.Join(root, hashed))
	if err != nil {
		t.Fatal(err)
	}
	for _, iface := range []string{"wsgi", "asgi"} {
		t.Run(iface, func(t *testing.T) {
			k := startDjango(t, iface, root)
			if !strings.Contains(k.Log(), `msg="serving static files" source=django prefix=/static dir=`+root+" ") {
				t.Fatalf("no 'serving static files source=django prefix=/static dir=%s' in the log:\n%s", root, k.Log())
			}
			if strings.Contains(k.Log(), "collectstatic") || strings.Contains(k.Log(), "/media") {
				t.Fatalf("a collectstatic warning or a media mount with a collected STATIC_ROOT and no --serve-media:\n%s", k.Log())
			}

			resp, body := k.Get("/static/" + hashed)
			if resp.StatusCode != 200 || body != string(want) {
				t.Fatalf("GET /static/%s: status %d, %d bytes; want 200 and the file's %d bytes", hashed, resp.StatusCode, len(body), len(want))
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
				t.Fatalf("hashed file Cache-Control %q, want the static handler's immutable one", cc)
			}
			if resp.Header.Get("ETag") == "" || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" {
				t.Fatalf("hashed file headers %v: want an ETag and text/css", resp.Header)
			}
			resp, _ = k.Get("/static/admin/css/base.css")
			if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=3600" {
				t.Fatalf("GET /static/admin/css/base.css: status %d Cache-Control %q; want 200 with the static handler's max-age=3600",
					resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
			if resp, _ := k.Get("/static/admin/css/no-such.css"); resp.StatusCode != 404 {
				t.Fatalf("GET a missing static file: status %d, want 404", resp.StatusCode)
			}
			// None of the /static/ requests reached Django.
			if got := appSaw(t, k); !slices.Equal(got, []string{"GET /djstatic-probe/"}) {
				t.Fatalf("the app saw %q, want only the probe", got)
			}
		})
	}
}

func TestDjangoStaticRootNotCollected(t *testing.T) {
	testPython(t, "django")
	t.Run("empty", func(t *testing.T) {
		root := t.TempDir()
		k := startDjango(t, "wsgi", root)
		// Logged before msg=ready: the whole log is there already.
		if re := regexp.MustCompile(`level=WARN msg="STATIC_ROOT is empty: run manage.py collectstatic" dir=` + regexp.QuoteMeta(root) + `\n`); !re.MatchString(k.Log()) {
			t.Fatalf("no %q in the log:\n%s", re, k.Log())
		}
		// Still served by Go: collectstatic may fill it later.
		if resp, _ := k.Get("/static/admin/css/base.css"); resp.StatusCode != 404 {
			t.Fatalf("GET /static/admin/css/base.css: status %d, want 404 from the static handler", resp.StatusCode)
		}
		if got := appSaw(t, k); !slices.Equal(got, []string{"GET /djstatic-probe/"}) {
			t.Fatalf("the app saw %q, want only the probe", got)
		}
	})
	t.Run("missing", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "never-collected")
		k := startDjango(t, "wsgi", root)
		if re := regexp.MustCompile(`level=WARN msg="not serving Django files: STATIC_ROOT is missing: run manage.py collectstatic" setting=STATIC_URL url=/static/ dir=` + regexp.QuoteMeta(root) + ` `); !re.MatchString(k.Log()) {
			t.Fatalf("no %q in the log:\n%s", re, k.Log())
		}
		if strings.Contains(k.Log(), "source=django") {
			t.Fatalf("a Django static mount for a missing STATIC_ROOT:\n%s", k.Log())
		}
		// Not mounted: the app gets the request.
		getFromApp(t, k, "/static/admin/css/base.css")
		if got := appSaw(t, k); !slices.Equal(got, []string{"GET /static/admin/css/base.css", "GET /djstatic-probe/"}) {
			t.Fatalf("the app saw %q, want the static request and the probe", got)
		}
	})
}

func TestDjangoStaticExplicitStaticWins(t *testing.T) {
	python := testPython(t, "django")
	root := collectDjangoStatic(t, python)
	mine := t.TempDir()
	if err := os.WriteFile(filepath.Join(mine, "mine.txt"), []byte("explicit"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := startDjango(t, "wsgi", root, "--static", "/static/="+mine)
	if !strings.Contains(k.Log(), `msg="not serving Django files: the prefix is already served" setting=STATIC_URL prefix=/static by=--static`) {
		t.Fatalf("no log that --static wins:\n%s", k.Log())
	}
	if strings.Contains(k.Log(), "source=django") {
		t.Fatalf("a Django mount beside --static for the same prefix:\n%s", k.Log())
	}
	if resp, body := k.Get("/static/mine.txt"); resp.StatusCode != 200 || body != "explicit" {
		t.Fatalf("GET /static/mine.txt: status %d body %q, want 200 from the --static directory", resp.StatusCode, body)
	}
	if resp, _ := k.Get("/static/admin/css/base.css"); resp.StatusCode != 404 {
		t.Fatalf("GET /static/admin/css/base.css: status %d, want 404 (STATIC_ROOT not mounted)", resp.StatusCode)
	}
}

// djstaticSettings is a settings module over krsite.settings with
// MEDIA_URL/MEDIA_ROOT (and STATIC_URL when DJSTATIC_STATIC_URL is set)
// from the environment.
const djstaticSettings = `import os

from krsite.settings import *  # noqa: F401,F403

MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ["DJSTATIC_MEDIA_ROOT"]
if "DJSTATIC_STATIC_URL" in os.environ:
    STATIC_URL = os.environ["DJSTATIC_STATIC_URL"]
`

func TestDjangoMediaAndCDN(t *testing.T) {
	python := testPython(t, "django")
	root := collectDjangoStatic(t, python)
	mods := t.TempDir()
	if err := os.WriteFile(filepath.Join(mods, "djstatic_settings.py"), []byte(djstaticSettings), 0o644); err != nil {
		t.Fatal(err)
	}
	media := t.TempDir()
	if err := os.WriteFile(filepath.Join(media, "upload.txt"), []byte("uploaded"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--pythonpath", mods, "--env", "DJANGO_SETTINGS_MODULE=djstatic_settings", "--env", "DJSTATIC_MEDIA_ROOT=" + media}

	t.Run("without --serve-media", func(t *testing.T) {
		k := startDjango(t, "wsgi", root, base...)
		if strings.Contains(k.Log(), "prefix=/media") {
			t.Fatalf("MEDIA_ROOT mounted without --serve-media:\n%s", k.Log())
		}
		getFromApp(t, k, "/media/upload.txt")
		if got := appSaw(t, k); !slices.Equal(got, []string{"GET /media/upload.txt", "GET /djstatic-probe/"}) {
			t.Fatalf("the app saw %q, want the media request and the probe", got)
		}
	})
	t.Run("with --serve-media", func(t *testing.T) {
		k := startDjango(t, "wsgi", root, append(base, "--serve-media")...)
		if !strings.Contains(k.Log(), `msg="serving static files" source=django prefix=/media dir=`+media+" ") {
			t.Fatalf("no 'serving static files source=django prefix=/media' in the log:\n%s", k.Log())
		}
		if resp, body := k.Get("/media/upload.txt"); resp.StatusCode != 200 || body != "uploaded" {
			t.Fatalf("GET /media/upload.txt: status %d body %q, want 200 from MEDIA_ROOT", resp.StatusCode, body)
		}
		if resp, _ := k.Get("/static/admin/css/base.css"); resp.StatusCode != 200 {
			t.Fatalf("GET /static/admin/css/base.css: status %d, want 200", resp.StatusCode)
		}
		if got := appSaw(t, k); !slices.Equal(got, []string{"GET /djstatic-probe/"}) {
			t.Fatalf("the app saw %q, want only the probe", got)
		}
	})
	t.Run("CDN STATIC_URL", func(t *testing.T) {
		k := startDjango(t, "wsgi", root, append(base, "--env", "DJSTATIC_STATIC_URL=https://cdn.example.com/static/")...)
		if !strings.Contains(k.Log(), `msg="not serving Django files: the URL is not a path on this server" setting=STATIC_URL url=https://cdn.example.com/static/`) {
			t.Fatalf("no log that a CDN STATIC_URL is skipped:\n%s", k.Log())
		}
		if strings.Contains(k.Log(), "source=django") {
			t.Fatalf("a Django mount for a CDN STATIC_URL:\n%s", k.Log())
		}
	})
}
