#!/usr/bin/env bash
# Worker-kill run: wrk -c32 against krait with 2 workers while `kill -9` hits
# one worker every INTERVAL seconds; reports non-2xx answers and socket
# errors per kill. Only the requests the killed worker had started may fail.
#
#   bash bench/killrun.sh [wsgi|asgi] [KRAIT_BINARY]
#
# Env: DURATION (20), INTERVAL (2), CONNS (32), PYTHON (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
IFACE=${1:-wsgi}
BIN=${2:-}
DURATION=${DURATION:-20}
INTERVAL=${INTERVAL:-2}
CONNS=${CONNS:-32}
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
if [[ -z "$BIN" ]]; then
  BIN=$(mktemp -d)/krait
  go build -o "$BIN" ./cmd/krait
fi
case "$IFACE" in
  wsgi) APP=hello_wsgi:app ;;
  asgi) APP=hello_asgi:app ;;
  *) echo "usage: $0 [wsgi|asgi] [KRAIT_BINARY]" >&2; exit 2 ;;
esac
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$(mktemp)
"$BIN" serve "$APP" --chdir bench/apps --python "$PYTHON" -w 2 -b "127.0.0.1:$PORT" --error-logfile "$LOG" &
KPID=$!
trap 'kill $KPID 2>/dev/null; wait $KPID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
  sleep 0.05
done

WRKOUT=$(mktemp)
wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/" >"$WRKOUT" &
WPID=$!
kills=0
end=$((SECONDS + DURATION - 1))
sleep "$INTERVAL"
while ((SECONDS < end)); do
  victim=$(pgrep -P "$KPID" | head -n1 || true)
  if [[ -n "$victim" ]]; then
    kill -9 "$victim" && kills=$((kills + 1))
  fi
  sleep "$INTERVAL"
done
wait "$WPID"

non2xx=$(grep -oP 'Non-2xx or 3xx responses: \K\d+' "$WRKOUT" || echo 0)
sockerr=$(grep -oP 'Socket errors: .*' "$WRKOUT" || echo "Socket errors: none")
reqs=$(grep -oP '\d+(?= requests in)' "$WRKOUT")
died=$(grep -c 'the worker died during a request' "$LOG" || true)
noworker=$(grep -c 'no worker could take the request' "$LOG" || true)
notsent=$(grep -c 'sending a request to a worker failed' "$LOG" || true)
echo "binary=$BIN interface=$IFACE conns=$CONNS duration=${DURATION}s kills=$kills"
echo "requests=$reqs non2xx=$non2xx per_kill=$(awk -v n="$non2xx" -v k="$kills" 'BEGIN{printf "%.1f", (k ? n/k : 0)}')"
echo "$sockerr"
echo "log: died_during_request=$died no_worker_could_take=$noworker send_failed=$notsent"
rm -f "$WRKOUT"
