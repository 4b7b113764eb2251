#!/usr/bin/env bash
# HTTP/2 conformance (h2spec) and a short load comparison (h2load) for
# krait's TLS/HTTP/2 engine. Runs everything on loopback, for seconds.
#
#   bash bench/h2/run.sh            # h2spec over TLS and h2c, then h2load
#   H2SPEC=/path/to/h2spec PYTHON=.venv/bin/python bash bench/h2/run.sh
#
# Needs: go, openssl; h2spec is installed with `go install` when missing;
# h2load (apt-get install nghttp2-client) for the load part, skipped without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

PYTHON=${PYTHON:-$root/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
H2SPEC=${H2SPEC:-$(command -v h2spec || true)}
if [ -z "$H2SPEC" ]; then
	GOBIN="$work/bin" go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
	H2SPEC="$work/bin/h2spec"
fi

go build -o "$work/krait" ./cmd/krait
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat > "$work/h2app.py" <<'PY'
def application(environ, start_response):
    body = b"hello from krait over " + environ["SERVER_PROTOCOL"].encode() + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
PY

# start NAME ARGS...: runs krait in the background, waits for msg=ready,
# prints its address.
start() {
	local name=$1; shift
	"$work/krait" serve h2app:application --chdir "$work" --python "$PYTHON" -b 127.0.0.1:0 "$@" \
		>"$work/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do
		if grep -q 'msg=ready' "$work/$name.log"; then
			sed -n 's/.*msg=listening addr=\([0-9.:]*\).*/\1/p' "$work/$name.log" | head -1
			return
		fi
		sleep 0.1
	done
	echo "krait ($name) did not start:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

tls_addr=$(start tls --certfile "$work/cert.pem" --keyfile "$work/key.pem")
h2c_addr=$(start h2c --http2-cleartext)

echo "== h2spec $("$H2SPEC" --version 2>/dev/null || true) over TLS ($tls_addr)"
"$H2SPEC" -h 127.0.0.1 -p "${tls_addr##*:}" -t -k -o 10 >"$work/h2spec-tls.txt" 2>&1 || true
sed -n '/^Failures:/,/^Finished/p' "$work/h2spec-tls.txt"
tail -1 "$work/h2spec-tls.txt"
echo "== h2spec over h2c ($h2c_addr)"
"$H2SPEC" -h 127.0.0.1 -p "${h2c_addr##*:}" -o 10 >"$work/h2spec-h2c.txt" 2>&1 || true
sed -n '/^Failures:/,/^Finished/p' "$work/h2spec-h2c.txt"
tail -1 "$work/h2spec-h2c.txt"

if command -v h2load >/dev/null; then
	# Short and bounded: 4 s each, 8 connections, 10 streams per connection on h2.
	echo "== h2load, 4 s each (1 worker process; requests/s)"
	for mode in "h2-tls https://$tls_addr/ -m 10" "h1-tls https://$tls_addr/ --h1" "h2c http://$h2c_addr/ -m 10"; do
		set -- $mode
		name=$1; url=$2; shift 2
		printf '%-7s ' "$name"
		h2load -D 4 -c 8 "$@" "$url" 2>&1 | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1 req\/s/p; /^requests:/p' | tr '\n' ' '
		echo
	done
else
	echo "== h2load not installed (apt-get install nghttp2-client): load part skipped"
fi
