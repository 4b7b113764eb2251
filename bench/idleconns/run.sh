#!/usr/bin/env bash
# Measures krait's memory for idle and half-sent-head connections.
#   bench/idleconns/run.sh KRAIT_BINARY [idle|fresh|halfhead] [N] [extra idleconns flags...]
# Uses .venv/bin/python and testdata/wsgiapp. Loopback only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:?krait binary}
mode=${2:-idle}
n=${3:-10000}
shift $(( $# < 3 ? $# : 3 ))
ulimit -n "$(ulimit -Hn)"
log=$(mktemp)
"$bin" serve app:application --chdir "$root/testdata/wsgiapp" --python "$root/.venv/bin/python" \
	-b 127.0.0.1:0 --keep-alive 600 --header-timeout 600 --error-logfile "$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q 'msg=ready' "$log" && break; sleep 0.1; done
addr=$(grep -o 'msg=listening.*addr=[^ ]*' "$log" | head -1 | sed 's/.*addr=//')
go build -o /tmp/idleconns.bin "$root/bench/idleconns"
/tmp/idleconns.bin -addr "$addr" -pid "$pid" -n "$n" -mode "$mode" "$@"
