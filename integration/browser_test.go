package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The browser test: a Django site (testdata/djangosite) on krait alone —
// TLS, HTTP/2, static files from Go, a WebSocket route — driven by headless
// Chromium through the Chrome DevTools Protocol, as a person would use it.

const (
	browserWidth, browserHeight = 1024, 768
	adminUser, adminPassword    = "admin", "krait-browser-Pa55"
	// Django's admin CSS paints #header with --header-bg (#417690) in the
	// light scheme; Chromium's default is transparent.
	adminHeaderRGB = "rgb(65, 118, 144)"
	// A page or a login (PBKDF2 with Django's default iterations) may be
	// slow on a busy machine; every wait is bounded by this.
	browserTimeout = 60 * time.Second
)

// djangoSite is testdata/djangosite prepared as a deployment would be:
// migrated SQLite database, collected static files, a superuser.
type djangoSite struct {
	dir, dataDir, staticRoot string
}

// setupDjangoSite runs manage.py migrate, collectstatic --noinput and
// createsuperuser --noinput with python into fresh temporary directories.
func setupDjangoSite(t *testing.T, python string) *djangoSite {
	t.Helper()
	base := t.TempDir()
	s := &djangoSite{dir: testdataDir("djangosite"), dataDir: filepath.Join(base, "data"), staticRoot: filepath.Join(base, "static")}
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	manage := func(extraEnv []string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, append([]string{"manage.py"}, args...)...)
		cmd.Dir = s.dir
		cmd.Env = append(append(os.Environ(), s.env()...), extraEnv...)
		cmd.WaitDelay = 5 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("manage.py %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// collectstatic needs no database: run it beside migrate.
	var wg sync.WaitGroup
	var collectOut []byte
	var collectErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, "manage.py", "collectstatic", "--noinput", "-v0")
		cmd.Dir = s.dir
		cmd.Env = append(os.Environ(), s.env()...)
		cmd.WaitDelay = 5 * time.Second
		collectOut, collectErr = cmd.CombinedOutput()
	}()
	manage(nil, "migrate", "--noinput", "-v0")
	manage([]string{"DJANGO_SUPERUSER_PASSWORD=" + adminPassword},
		"createsuperuser", "--noinput", "--username", adminUser, "--email", "admin@example.com")
	wg.Wait()
	if collectErr != nil {
		t.Fatalf("manage.py collectstatic: %v\n%s", collectErr, collectOut)
	}
	// ManifestStaticFilesStorage: the hashed copies the pages link to exist.
	if m, _ := filepath.Glob(filepath.Join(s.staticRoot, "admin", "css", "base.*.css")); len(m) != 1 {
		t.Fatalf("collectstatic wrote no hashed admin/css/base.*.css into %s (found %q)", s.staticRoot, m)
	}
	return s
}

// env is the site's environment (see testdata/djangosite/krsite/settings.py).
func (s *djangoSite) env() []string {
	return []string{"DJANGOSITE_DATA_DIR=" + s.dataDir, "DJANGOSITE_STATIC_ROOT=" + s.staticRoot}
}

// cdpMessage is one Chrome DevTools Protocol message: a command's answer
// (ID set) or an event (Method set), of the browser or of a page session.
type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// cdpConn is a minimal CDP client over --remote-debugging-pipe: JSON
// messages each ended by a NUL byte, Chromium reading its fd 3 and writing
// its fd 4. Events are kept in order so that a test can wait for one that
// arrives after a mark (taken before the action that causes it).
type cdpConn struct {
	w   *os.File
	wmu sync.Mutex

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMessage
	events  []cdpMessage
	changed chan struct{} // closed and replaced at every event
	closed  chan struct{} // closed when the read side ends
	readErr error
}

func newCDPConn(w, r *os.File) *cdpConn {
	c := &cdpConn{w: w, pending: map[int64]chan cdpMessage{}, changed: make(chan struct{}), closed: make(chan struct{})}
	go c.readLoop(r)
	return c
}

func (c *cdpConn) readLoop(r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.ReadBytes(0)
		if err != nil {
			c.finish(fmt.Errorf("cdp: reading from the browser: %w", err))
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(b[:len(b)-1], &m); err != nil {
			c.finish(fmt.Errorf("cdp: undecodable message %.200q: %w", b, err))
			return
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.pending[m.ID]; ok {
				delete(c.pending, m.ID)
				ch <- m // buffered
			}
		} else if m.Method != "" {
			c.events = append(c.events, m)
			close(c.changed)
			c.changed = make(chan struct{})
		}
		c.mu.Unlock()
	}
}

func (c *cdpConn) finish(err error) {
	c.mu.Lock()
	c.readErr = err
	c.mu.Unlock()
	close(c.closed)
}

func (c *cdpConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// call sends method with params to the browser (session "") or a page
// session and decodes the result into result (when not nil).
func (c *cdpConn) call(ctx context.Context, session, method string, params, result any) error {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan cdpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if params == nil {
		params = struct{}{}
	}
	msg, err := json.Marshal(struct {
		ID        int64  `json:"id"`
		SessionID string `json:"sessionId,omitempty"`
		Method    string `json:"method"`
		Params    any    `json:"params"`
	}{id, session, method, params})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	c.wmu.Lock()
	if d, ok := ctx.Deadline(); ok {
		_ = c.w.SetWriteDeadline(d) // a browser that stops reading must not block the test
	}
	_, err = c.w.Write(append(msg, 0))
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: writing to the browser: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: error %d: %s", method, m.Error.Code, m.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: result %.300s: %w", method, m.Result, err)
			}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: no answer: %w", method, ctx.Err())
	case <-c.closed:
		return fmt.Errorf("%s: %w", method, c.err())
	}
}

// mark is the number of events received so far, for waitEvent and eventsSince.
func (c *cdpConn) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// eventsSince returns the params of the events named method of session
// received after mark from.
func (c *cdpConn) eventsSince(from int, session, method string) []json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []json.RawMessage
	for _, e := range c.events[from:] {
		if e.SessionID == session && e.Method == method {
			out = append(out, e.Params)
		}
	}
	return out
}

// waitEvent waits for the first event named method of session after mark
// from and returns its params.
func (c *cdpConn) waitEvent(ctx context.Context, from int, session, method string) (json.RawMessage, error) {
	for {
		c.mu.Lock()
		for _, e := range c.events[from:] {
			if e.SessionID == session && e.Method == method {
				c.mu.Unlock()
				return e.Params, nil
			}
		}
		from = len(c.events)
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", method, ctx.Err())
		case <-c.closed:
			return nil, fmt.Errorf("waiting for %s: %w", method, c.err())
		}
	}
}

// browser is a headless Chromium driven over CDP.
type browser struct {
	cmd  *exec.Cmd
	cdp  *cdpConn
	log  *logBuffer
	done chan struct{}
}

// spkiHash is what --ignore-certificate-errors-spki-list takes: the base64
// SHA-256 of the certificate's SubjectPublicKeyInfo. Chromium then accepts
// that certificate (and only it) without --ignore-certificate-errors.
func spkiHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// startBrowser starts headless Chromium trusting the certificate whose
// SPKI hash is spki and stops it at cleanup.
func startBrowser(t *testing.T, chromium, spki string) *browser {
	t.Helper()
	toChrome, ourW, err := os.Pipe() // Chromium reads commands from its fd 3
	if err != nil {
		t.Fatal(err)
	}
	ourR, fromChrome, err := os.Pipe() // and writes answers and events to its fd 4
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{log: newLogBuffer(), done: make(chan struct{})}
	b.cmd = exec.Command(chromium,
		"--headless=new", "--no-sandbox", "--remote-debugging-pipe",
		"--user-data-dir="+t.TempDir(),
		"--ignore-certificate-errors-spki-list="+spki,
		"--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-extensions", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-default-apps", "--disable-features=Translate,MediaRouter,OptimizationHints",
		"--no-proxy-server", "--password-store=basic", "--use-mock-keychain", "--mute-audio", "--hide-scrollbars",
		// sRGB output: the screenshot's pixels are the CSS colours.
		"--force-color-profile=srgb",
		fmt.Sprintf("--window-size=%d,%d", browserWidth, browserHeight),
		"about:blank")
	b.cmd.ExtraFiles = []*os.File{toChrome, fromChrome}
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	// Its own process group, so that a forced stop also ends the renderers.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	b.cmd.WaitDelay = 5 * time.Second
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	toChrome.Close()
	fromChrome.Close()
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	b.cdp = newCDPConn(ourW, ourR)
	t.Cleanup(func() {
		b.stop(t)
		ourW.Close()
		if t.Failed() {
			out := b.log.String()
			if len(out) > 16<<10 {
				out = "...\n" + out[len(out)-16<<10:]
			}
			t.Logf("chromium's output:\n%s", out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var v struct{ Product string }
	if err := b.cdp.call(ctx, "", "Browser.getVersion", nil, &v); err != nil {
		t.Fatalf("chromium does not answer over CDP: %v\nits output:\n%s", err, b.log.String())
	}
	t.Logf("browser: %s", v.Product)
	return b
}

// stop closes the browser (Browser.close), killing its process group when
// it has not exited in time.
func (b *browser) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.cdp.call(ctx, "", "Browser.close", nil, nil) // the answer may not come: the browser is going
	select {
	case <-b.done:
		return
	case <-time.After(stopTimeout):
	}
	t.Errorf("chromium did not exit within %v of Browser.close; killing it", stopTimeout)
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
}

// browserPage is one tab in its own browser context (cookies, cache), attached
// with a flat CDP session.
type browserPage struct {
	t       *testing.T
	b       *browser
	session string
	diag    func() string // more to print on failure (krait's log)
}

func (b *browser) newPage(t *testing.T, diag func() string) *browserPage {
	t.Helper()
	p := &browserPage{t: t, b: b, diag: diag}
	var bc struct {
		BrowserContextID string `json:"browserContextId"`
	}
	p.call("Target.createBrowserContext", map[string]any{"disposeOnDetach": true}, &bc)
	var target struct {
		TargetID string `json:"targetId"`
	}
	p.call("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc.BrowserContextID}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	p.call("Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	p.session = att.SessionID
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		_ = b.cdp.call(ctx, "", "Target.disposeBrowserContext", map[string]any{"browserContextId": bc.BrowserContextID}, nil)
	})
	p.call("Page.enable", nil, nil)
	p.call("Network.enable", nil, nil)
	p.call("Emulation.setDeviceMetricsOverride", map[string]any{
		"width": browserWidth, "height": browserHeight, "deviceScaleFactor": 1, "mobile": false}, nil)
	// The admin's CSS has a dark scheme: fix the light one, whose colours the test knows.
	p.call("Emulation.setEmulatedMedia", map[string]any{
		"features": []map[string]string{{"name": "prefers-color-scheme", "value": "light"}}}, nil)
	return p
}

func (p *browserPage) fatalf(format string, args ...any) {
	p.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if p.diag != nil {
		msg += "\n" + p.diag()
	}
	p.t.Fatal(msg)
}

// call is a command of this page's session (method "Target.*" goes to the
// browser), failing the test on error or after browserTimeout.
func (p *browserPage) call(method string, params, result any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	session := p.session
	if strings.HasPrefix(method, "Target.") {
		session = ""
	}
	if err := p.b.cdp.call(ctx, session, method, params, result); err != nil {
		p.fatalf("cdp: %v", err)
	}
}

func (p *browserPage) waitEvent(from int, method string) json.RawMessage {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	ev, err := p.b.cdp.waitEvent(ctx, from, p.session, method)
	if err != nil {
		p.fatalf("cdp: %v", err)
	}
	return ev
}

// eval runs a JavaScript expression in the page (awaiting a promise) and
// decodes its value into result.
func (p *browserPage) eval(expr string, result any) {
	p.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	p.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if r.ExceptionDetails != nil {
		p.fatalf("%s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if err := json.Unmarshal(r.Result.Value, result); err != nil {
		p.fatalf("%s: value %.300s: %v", expr, r.Result.Value, err)
	}
}

// navigate loads url and waits for its load event.
func (p *browserPage) navigate(url string) {
	p.t.Helper()
	mark := p.b.cdp.mark()
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	p.call("Page.navigate", map[string]any{"url": url}, &nav)
	if nav.ErrorText != "" {
		p.fatalf("navigating to %s: %s", url, nav.ErrorText)
	}
	p.waitEvent(mark, "Page.loadEventFired")
}

// screenshot captures the viewport as PNG, writes it to path and decodes it.
func (p *browserPage) screenshot(path string) image.Image {
	p.t.Helper()
	var shot struct {
		Data []byte `json:"data"` // base64 in JSON: decoded by encoding/json
	}
	p.call("Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	if err := os.WriteFile(path, shot.Data, 0o644); err != nil {
		p.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot.Data))
	if err != nil {
		p.fatalf("the screenshot (%d bytes, %s) is no PNG: %v", len(shot.Data), path, err)
	}
	p.t.Logf("screenshot: %s (%d bytes)", path, len(shot.Data))
	return img
}

// domRect is a DOMRect in CSS pixels (= screenshot pixels at scale 1).
type domRect struct{ Left, Top, Width, Height float64 }

func (p *browserPage) rectOf(selector string) domRect {
	p.t.Helper()
	var r domRect
	p.eval(fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect();
		return {left: r.left, top: r.top, width: r.width, height: r.height}; })()`, selector), &r)
	if r.Width < 1 || r.Height < 1 {
		p.fatalf("%s has no area on the page: %+v", selector, r)
	}
	return r
}

// click presses and releases the left mouse button at the centre of selector.
func (p *browserPage) click(selector string) {
	p.t.Helper()
	r := p.rectOf(selector)
	x, y := r.Left+r.Width/2, r.Top+r.Height/2
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		p.call("Input.dispatchMouseEvent", map[string]any{"type": typ, "x": x, "y": y, "button": "left", "clickCount": 1}, nil)
	}
}

// typeInto focuses selector and types text as keyboard input.
func (p *browserPage) typeInto(selector, text string) {
	p.t.Helper()
	var ok bool
	p.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); return document.activeElement === e; })()`, selector), &ok)
	if !ok {
		p.fatalf("%s cannot be focused", selector)
	}
	p.call("Input.insertText", map[string]any{"text": text}, nil)
}

// cdpResponse is the part of a Network.responseReceived event the test reads.
type cdpResponse struct {
	Type     string `json:"type"`
	Response struct {
		URL      string            `json:"url"`
		Status   int               `json:"status"`
		Protocol string            `json:"protocol"`
		Headers  map[string]string `json:"headers"`
	} `json:"response"`
}

func (r cdpResponse) header(name string) string {
	for k, v := range r.Response.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// responsesSince returns the Network.responseReceived events after mark.
func (p *browserPage) responsesSince(mark int) []cdpResponse {
	p.t.Helper()
	var out []cdpResponse
	for _, raw := range p.b.cdp.eventsSince(mark, p.session, "Network.responseReceived") {
		var r cdpResponse
		if err := json.Unmarshal(raw, &r); err != nil {
			p.fatalf("Network.responseReceived %.300s: %v", raw, err)
		}
		out = append(out, r)
	}
	return out
}

// artifactDir is where screenshots go: $KRAIT_TEST_ARTIFACTS (kept after
// the run, for a person to look at) or the test's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KRAIT_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// countColor counts the pixels of r in img within 2 of rgb in each channel.
func countColor(img image.Image, r image.Rectangle, rgb [3]uint8) int {
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if nearByte(cr>>8, rgb[0]) && nearByte(cg>>8, rgb[1]) && nearByte(cb>>8, rgb[2]) {
				n++
			}
		}
	}
	return n
}

func nearByte(a uint32, b uint8) bool { return int(a)-int(b) <= 2 && int(b)-int(a) <= 2 }

func (r domRect) image() image.Rectangle {
	return image.Rect(int(r.Left+0.5), int(r.Top+0.5), int(r.Left+r.Width), int(r.Top+r.Height))
}

var appRequestRE = regexp.MustCompile(`(?m)djangosite request (\S+) (\S+)$`)

// appRequests lists the requests the Django app logged (krsite.requestlog),
// "METHOD PATH", leaving out the browser's own /favicon.ico.
func appRequests(log string) []string {
	var out []string
	for _, m := range appRequestRE.FindAllStringSubmatch(log, -1) {
		if m[2] != "/favicon.ico" {
			out = append(out, m[1]+" "+m[2])
		}
	}
	return out
}

// hashedStaticRE matches the admin's files as collectstatic names them
// with ManifestStaticFilesStorage: admin/css/base.96c479cedf7a.css.
var hashedStaticRE = regexp.MustCompile(`^/static/admin/(?:css|js|img)/(?:[\w.-]+/)*([\w-]+)\.[0-9a-f]{12}\.(css|js|svg)$`)

// checkStatic checks that every response under /static/ is a hashed
// file answered over h2 by krait's static handler (its headers, and its
// access-log line), and returns the names of the stylesheets ("base").
func checkBrowserStatic(p *browserPage, k *Krait, origin string, responses []cdpResponse) (sheets []string) {
	p.t.Helper()
	for _, r := range responses {
		path, ok := strings.CutPrefix(r.Response.URL, origin)
		if !ok || !strings.HasPrefix(path, "/static/") {
			continue
		}
		m := hashedStaticRE.FindStringSubmatch(path)
		if m == nil {
			p.fatalf("%s is not one of the admin's content-hashed static files", r.Response.URL)
		}
		if r.Type == "Stylesheet" {
			sheets = append(sheets, m[1])
		}
		if r.Response.Status != 200 || r.Response.Protocol != "h2" {
			p.fatalf("%s: %d over %q, want 200 over h2", r.Response.URL, r.Response.Status, r.Response.Protocol)
		}
		// The static handler's headers (internal/static/doc.go): immutable
		// caching for a content-hashed name, a strong ETag, Last-Modified,
		// nosniff; Django sends none of these for its pages.
		if cc := r.header("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			p.fatalf("%s: Cache-Control %q, want krait's static handler's immutable caching; headers %v", r.Response.URL, cc, r.Response.Headers)
		}
		if et := r.header("ETag"); !strings.HasPrefix(et, `"`) || r.header("Last-Modified") == "" ||
			r.header("Accept-Ranges") != "bytes" || r.header("X-Content-Type-Options") != "nosniff" {
			p.fatalf("%s: headers %v; want the static handler's ETag, Last-Modified, Accept-Ranges, nosniff", r.Response.URL, r.Response.Headers)
		}
		want := map[string]string{"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml"}[m[2]]
		if ct := r.header("Content-Type"); ct != want {
			p.fatalf("%s: Content-Type %q, want %q", r.Response.URL, ct, want)
		}
		if _, ok := k.WaitLog(regexp.MustCompile(`"GET `+regexp.QuoteMeta(path)+` HTTP/2\.0" 200 `), ioTimeout); !ok {
			p.fatalf("no access-log line for GET %s over HTTP/2.0", path)
		}
	}
	slices.Sort(sheets)
	return sheets
}

// documentSince is the last page (Document) response after mark.
func (p *browserPage) documentSince(mark int) cdpResponse {
	p.t.Helper()
	var doc *cdpResponse
	for _, r := range p.responsesSince(mark) {
		if r.Type == "Document" {
			doc = &r
		}
	}
	if doc == nil {
		p.fatalf("no page response since mark %d", mark)
	}
	return *doc
}

// TestBrowserDjangoAdmin is the issue's browser test: the Django admin's
// login page, served by krait over HTTPS with HTTP/2, renders in headless
// Chromium with its CSS (hashed files from collectstatic, served by krait's
// static handler, never by the app: checked in the computed style, in the
// screenshot's pixels, in the responses' headers and in the logs), and a
// login succeeds with secure cookies. It runs under WSGI and under ASGI;
// under ASGI the page also opens a wss:// WebSocket to the site's echo
// route, which sees the logged-in session. krait runs from README flags
// only: --certfile/--keyfile, --static, --env, --access-logfile.
//
// Screenshots: browser-{wsgi,asgi}-admin-{login,index}.png in
// $KRAIT_TEST_ARTIFACTS when set (kept), else in the test's temp dir.
func TestBrowserDjangoAdmin(t *testing.T) {
	chromium := requireTool(t, "chromium", "apt-get install chromium")
	python := testPython(t, "django")
	site := setupDjangoSite(t, python)
	pki := newPKI(t)
	server, cert, key := pki.issue(t, "server", 2, false)
	b := startBrowser(t, chromium, spkiHash(server.Leaf))
	shots := artifactDir(t)

	t.Run("wsgi", func(t *testing.T) {
		browseDjangoAdmin(t, b, site, "krsite.wsgi:application", cert, key, filepath.Join(shots, "browser-wsgi-"), false)
	})
	t.Run("asgi", func(t *testing.T) {
		browseDjangoAdmin(t, b, site, "krsite.asgi:application", cert, key, filepath.Join(shots, "browser-asgi-"), true)
	})
}

func browseDjangoAdmin(t *testing.T, b *browser, site *djangoSite, app, cert, key, shotPrefix string, websocket bool) {
	// Django checks the Origin of the login POST against
	// CSRF_TRUSTED_ORIGINS, so the port is chosen first.
	port := freePort(t)
	origin := fmt.Sprintf("https://127.0.0.1:%d", port)
	args := []string{app, "--chdir", site.dir, "-b", fmt.Sprintf("127.0.0.1:%d", port),
		"--certfile", cert, "--keyfile", key, "--static", "/static=" + site.staticRoot,
		"--access-logfile", "-", "--env", "DJANGOSITE_CSRF_TRUSTED_ORIGINS=" + origin}
	for _, kv := range site.env() {
		args = append(args, "--env", kv)
	}
	k := startKrait(t, []string{"django"}, args...)
	k.Forbid("Traceback", "level=ERROR")
	p := b.newPage(t, func() string { return "krait log:\n" + k.Log() })

	// The login page, over HTTP/2.
	mark := b.cdp.mark()
	p.navigate(origin + "/admin/login/")
	if doc := p.documentSince(mark); doc.Response.URL != origin+"/admin/login/" || doc.Response.Status != 200 || doc.Response.Protocol != "h2" {
		p.fatalf("the login page's response: %+v; want 200 for %s/admin/login/ over h2", doc, origin)
	}
	var nextHop string
	p.eval(`performance.getEntriesByType("navigation")[0].nextHopProtocol`, &nextHop)
	if nextHop != "h2" {
		p.fatalf("navigation nextHopProtocol %q, want h2", nextHop)
	}
	// Its CSS and scripts: Django's hashed names, from krait's static handler.
	sheets := checkBrowserStatic(p, k, origin, p.responsesSince(mark))
	if want := []string{"base", "dark_mode", "login", "nav_sidebar", "responsive"}; !slices.Equal(sheets, want) {
		p.fatalf("the login page loaded stylesheets %q, want %q", sheets, want)
	}

	// The CSS applies: computed style that only the admin's CSS sets.
	var style struct{ HeaderBG, Font string }
	p.eval(`({headerBG: getComputedStyle(document.getElementById("header")).backgroundColor,
		font: getComputedStyle(document.body).fontFamily})`, &style)
	if style.HeaderBG != adminHeaderRGB || !strings.HasPrefix(style.Font, `"Segoe UI", system-ui`) {
		p.fatalf("computed style: #header background %q (want %q), body font %q (want the admin's \"Segoe UI\", system-ui, ...)",
			style.HeaderBG, adminHeaderRGB, style.Font)
	}
	// ... and shows: in the screenshot, #header is painted in that colour,
	// and little else is.
	header := p.rectOf("#header")
	loginShot := shotPrefix + "admin-login.png"
	img := p.screenshot(loginShot)
	if img.Bounds().Dx() != browserWidth || img.Bounds().Dy() != browserHeight {
		p.fatalf("screenshot %s is %v, want %dx%d", loginShot, img.Bounds(), browserWidth, browserHeight)
	}
	hr, headerRGB := header.image(), [3]uint8{0x41, 0x76, 0x90}
	if n, area := countColor(img, hr, headerRGB), hr.Dx()*hr.Dy(); n < area/2 {
		p.fatalf("screenshot %s: %d of the %d pixels of #header %v are #417690, want most", loginShot, n, area, hr)
	}
	if n, limit := countColor(img, img.Bounds(), headerRGB), hr.Dx()*hr.Dy()+50*50; n > limit {
		p.fatalf("screenshot %s: %d pixels are #417690, more than #header %v and a button", loginShot, n, hr)
	}

	// Log in, as a person would: type, click.
	p.typeInto("#id_username", adminUser)
	p.typeInto("#id_password", adminPassword)
	mark = b.cdp.mark()
	p.click(`#login-form input[type="submit"]`)
	p.waitEvent(mark, "Page.loadEventFired")
	var after struct{ Path, H1, Error string }
	p.eval(`({path: location.pathname,
		h1: (document.querySelector("#content h1") || {}).textContent || "",
		error: (document.querySelector(".errornote") || {}).textContent || ""})`, &after)
	if after.Path != "/admin/" || after.H1 != "Site administration" {
		p.fatalf("after logging in: %+v; want the admin index (/admin/, \"Site administration\")", after)
	}
	if doc := p.documentSince(mark); doc.Response.URL != origin+"/admin/" || doc.Response.Status != 200 || doc.Response.Protocol != "h2" {
		p.fatalf("the admin index's response: %+v; want 200 over h2", doc)
	}
	checkBrowserStatic(p, k, origin, p.responsesSince(mark))
	p.screenshot(shotPrefix + "admin-index.png")

	// The session and CSRF cookies are Secure (SESSION_COOKIE_SECURE,
	// CSRF_COOKIE_SECURE) and the browser kept them: it saw HTTPS.
	var jar struct {
		Cookies []struct {
			Name     string `json:"name"`
			Secure   bool   `json:"secure"`
			HTTPOnly bool   `json:"httpOnly"`
		} `json:"cookies"`
	}
	p.call("Network.getCookies", map[string]any{"urls": []string{origin + "/"}}, &jar)
	got := map[string]string{}
	for _, c := range jar.Cookies {
		got[c.Name] = fmt.Sprintf("secure=%v httponly=%v", c.Secure, c.HTTPOnly)
	}
	if got["sessionid"] != "secure=true httponly=true" || got["csrftoken"] != "secure=true httponly=false" || len(got) != 2 {
		p.fatalf("cookies %v; want a Secure, HttpOnly sessionid and a Secure csrftoken", got)
	}

	if websocket {
		// The page opens a WebSocket to the site's echo route; the
		// handshake carries the session cookie.
		var reply string
		p.eval(`new Promise((resolve, reject) => {
			const ws = new WebSocket("wss://" + location.host + "/ws/echo/");
			const timer = setTimeout(() => reject(new Error("no echo within 30s")), 30000);
			ws.onopen = () => ws.send("hello from chromium");
			ws.onmessage = (e) => { clearTimeout(timer); resolve(e.data); ws.close(1000); };
			ws.onerror = () => { clearTimeout(timer); reject(new Error("websocket error")); };
			ws.onclose = (e) => { clearTimeout(timer); reject(new Error("websocket closed: " + e.code)); };
		})`, &reply)
		var echo map[string]string
		if err := json.Unmarshal([]byte(reply), &echo); err != nil {
			p.fatalf("echo %q: %v", reply, err)
		}
		// Browsers open WebSockets on their own HTTP/1.1 connection when
		// the server announces no RFC 8441 extended CONNECT over HTTP/2.
		want := map[string]string{"echo": "hello from chromium", "scheme": "wss", "http_version": "1.1", "user": adminUser}
		if !maps.Equal(echo, want) {
			p.fatalf("WebSocket echo %v, want %v", echo, want)
		}
		if _, ok := k.WaitLog(regexp.MustCompile(`"GET /ws/echo/ HTTP/1\.1" 101 `), ioTimeout); !ok {
			p.fatalf("no access-log line for the WebSocket")
		}
	}

	// Every request the app saw, in order: no static file among them.
	k.MustWaitLog(regexp.MustCompile(`djangosite request GET /admin/\n`))
	if got, want := appRequests(k.Log()), []string{"GET /admin/login/", "POST /admin/login/", "GET /admin/"}; !slices.Equal(got, want) {
		p.fatalf("the app saw requests %q, want exactly %q (static files must not reach it)", got, want)
	}
}
