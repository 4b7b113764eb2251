#!/usr/bin/env bash
# krait's test command: the README's "how to test" and what CI runs.
#
#   bash scripts/test.sh
#
# Phases: venv (Python test deps in .venv), gofmt, go vet, go test (unit +
# integration through the real binary), Python adapter unit tests.
# Works on a clean clone with Go and python3 on PATH; no stdin needed.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

phase=""
start_phase() {
	phase=$1
	printf '\n==> %s\n' "$phase"
}
on_exit() {
	status=$?
	if [ "$status" -ne 0 ] && [ -n "$phase" ]; then
		printf '\nFAILED in phase: %s (exit status %s)\n' "$phase" "$status" >&2
	fi
}
trap on_exit EXIT

python=${PYTHON:-python3}
venv=$root/.venv
req=$root/requirements-test.txt
stamp=$venv/.requirements-test.sha256

start_phase "venv: Python test dependencies in .venv"
if ! command -v "$python" >/dev/null 2>&1; then
	echo "$python not found on PATH" >&2
	exit 1
fi
# The stamp covers the requirements and the interpreter the venv was made from.
want=$({
	cat "$req"
	"$python" -c 'import sys; print(sys.executable, sys.version)'
} | sha256sum | cut -d' ' -f1)
have=""
if [ -f "$stamp" ]; then
	have=$(cat "$stamp")
fi
if [ ! -x "$venv/bin/python" ] || [ "$want" != "$have" ]; then
	echo "creating $venv from $req"
	rm -rf "$venv"
	if ! "$python" -m venv "$venv"; then
		echo "$python -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
		exit 1
	fi
	"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req"
	echo "$want" >"$stamp"
else
	echo "$venv is up to date with $(basename "$req")"
fi

start_phase "test tools: pebble (ACME test CA), h2spec (HTTP/2 conformance), chromium (browser test)"
# The integration tests drive these; KRAIT_REQUIRE_TOOLS makes a missing one
# fail its test instead of skipping it.
tools=$root/.tools/bin
mkdir -p "$tools"
export PATH=$tools:$PATH
if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing pebble with apt-get"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null
	else
		echo "pebble is missing: install the Debian package pebble (needs root)" >&2
		exit 1
	fi
fi
# Headless Chromium drives the Django admin in integration/browser_test.go.
if ! command -v chromium >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing chromium with apt-get"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	else
		echo "chromium is missing: install the Debian package chromium (needs root)" >&2
		exit 1
	fi
fi
h2spec_version=v2.2.1+incompatible
if [ ! -x "$tools/h2spec" ]; then
	echo "installing h2spec $h2spec_version into $tools"
	GOBIN=$tools go install "github.com/summerwind/h2spec/cmd/h2spec@$h2spec_version"
fi
export KRAIT_REQUIRE_TOOLS=1
echo "pebble: $(command -v pebble); h2spec: $tools/h2spec; chromium: $(command -v chromium)"

start_phase "gofmt"
# Tracked and new (not ignored) Go files; find(1) when this is no git checkout.
list_go_files() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files --cached --others --exclude-standard -- '*.go'
	else
		find . -name '*.go' -not -path '*/.venv/*' -not -path './.git/*'
	fi
}
go_files=()
while IFS= read -r f; do
	[ -f "$f" ] && go_files+=("$f")
done < <(list_go_files)
unformatted=""
if [ "${#go_files[@]}" -gt 0 ]; then
	unformatted=$(gofmt -l "${go_files[@]}")
fi
if [ -n "$unformatted" ]; then
	echo "these files need gofmt -w:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo ok

start_phase "go vet"
go vet ./...
echo ok

start_phase "go test"
export KRAIT_TEST_PYTHON=$venv/bin/python
go test -count=1 -timeout 20m ./...

start_phase "python adapter unit tests"
if [ -d python/tests ]; then
	# python/tests is no package: its start dir is the top level (the tests put
	# their own directory on sys.path).
	"$venv/bin/python" -m unittest discover -s python/tests
else
	echo "python/tests absent: skipped"
fi

phase=""
printf '\nall phases passed\n'
