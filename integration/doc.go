// Package integration tests the real krait binary end to end: TestMain
// builds cmd/krait once, each test starts it on a free port against a real
// Python app from testdata/ (raw WSGI under wsgiref's validator, Flask,
// Django, a request recorder for the HTTP/1.1 conformance corpus) and talks
// to it over TCP or a unix socket.
//
// The Python interpreter is $KRAIT_TEST_PYTHON (scripts/test.sh points it at
// .venv/bin/python, which has requirements-test.txt installed); without it
// tests use python3 from PATH and skip those whose app needs a package
// python3 lacks.
//
// KRAIT_TEST_BIN=/path/to/krait skips the build and tests that binary.
//
// External tools (pebble, h2spec, chromium) are found on PATH; when one is
// missing its tests skip, or fail when KRAIT_REQUIRE_TOOLS is set
// (scripts/test.sh installs them and sets it, so CI never skips them).
// TestBrowserDjangoAdmin drives headless Chromium over the DevTools protocol
// (--remote-debugging-pipe) and writes screenshots to $KRAIT_TEST_ARTIFACTS
// when set.
//
// Tests synchronise on observable events only (log lines, files the app
// writes, responses), never on sleeps, and never assert on timing.
package integration
