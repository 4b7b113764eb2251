#!/usr/bin/env bash
# bench/run.sh: krait side by side with gunicorn, uvicorn and Granian, in one run.
#
# SUITE picks what is measured (see bench/README.md):
#   SUITE=wsgi   hello world over HTTP (default; krait's WSGI worker vs
#                gunicorn sync/gthread, uvicorn and Granian WSGI)
#   SUITE=flask  a Flask JSON view (bench/apps/flask_json.py, GET /items?n=10)
#                on every WSGI server: krait, gunicorn sync/gthread, Granian
#   SUITE=django a Django view rendering a small template through Django's
#                default middleware (bench/apps/django_site, GET /items?n=10)
#                on the same WSGI servers
#   SUITE=asgi   hello world over HTTP, raw ASGI app: krait-asgi vs uvicorn
#                (httptools+uvloop), hypercorn (uvloop), gunicorn with
#                uvicorn's worker and Granian ASGI; ratios are krait-asgi's
#   SUITE=ws     WebSocket echo on the ASGI servers and app: bench/wsload (Go)
#                instead of wrk, CONNECTIONS open sockets each sending a
#                WS_SIZE byte text message and awaiting its echo in a loop
#
# Every server serves the suite's app (bench/apps/) with one worker, its whole
# process tree pinned to one core (SERVER_CPU) and wrk pinned to the other
# (WRK_CPU). Each measurement follows a warm-up run. The table at the end
# gives requests/s, p50, p99, the server's CPU use and krait's ratio to each
# peer, then a per-request breakdown (CPU of the front process and of its
# workers, context switches); raw wrk outputs and server logs go to
# bench/results/<time>/.
#
# Environment (all optional):
#   DURATION=10s        wrk duration of each measurement
#   WARMUP=3s           wrk duration of the warm-up before each measurement
#   CONNECTIONS=64      wrk connections (-c); wrk runs one thread (-t1)
#   ROUNDS=1            measurements per server, interleaved; the median counts
#   PICK=median         which round stands for a server: median, or best (fastest)
#   SERVERS="krait gunicorn-sync gunicorn-gthread uvicorn granian"
#                       which servers to run (also: krait-asgi, hypercorn,
#                       gunicorn-uvicorn, granian-asgi, and krait-b:
#                       KRAIT_BIN_B run like krait, to A/B a change);
#                       SUITE=flask|django default: "krait gunicorn-sync
#                       gunicorn-gthread granian"; SUITE=asgi|ws default:
#                       "krait-asgi uvicorn hypercorn gunicorn-uvicorn
#                       granian-asgi"
#   GRANIAN_*           Granian's own settings (e.g. GRANIAN_BLOCKING_THREADS=1)
#                       reach it unchanged; the default is Granian's defaults
#   WS_SIZE=13          SUITE=ws: message size in bytes
#   KRAIT_BIN=path      krait binary; default: go build ./cmd/krait into a temp dir
#   PYTHON=python3      interpreter that creates bench/.venv (peers, and krait's workers)
#   SERVER_CPU=0 WRK_CPU=1   cores for the servers and for wrk
#   READY_TIMEOUT=60    seconds a server may take to become ready
#   PROFILE=0           NAME (1 = krait): one more run of that server under
#                       `perf record -g` on SERVER_CPU, not counted in the table;
#                       reports in NAME.perf*.txt
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-1}
export PICK=${PICK:-median}
SUITE=${SUITE:-wsgi}
# Per suite: the WSGI and ASGI apps (module:callable in bench/apps; empty:
# none, and servers of that interface fail), the path wrk requests, the title.
WSGI_APP="" ASGI_APP="" URL_PATH="/"
case $SUITE in
wsgi)
	SERVERS=${SERVERS:-krait gunicorn-sync gunicorn-gthread uvicorn granian}
	export BENCH_REF=krait
	WSGI_APP=hello_wsgi:app ASGI_APP=hello_asgi:app
	TITLE="WSGI hello world"
	;;
flask)
	SERVERS=${SERVERS:-krait gunicorn-sync gunicorn-gthread granian}
	export BENCH_REF=krait
	WSGI_APP=flask_json:app URL_PATH="/items?n=10"
	TITLE="Flask JSON view (GET $URL_PATH)"
	;;
django)
	SERVERS=${SERVERS:-krait gunicorn-sync gunicorn-gthread granian}
	export BENCH_REF=krait
	WSGI_APP=django_site.wsgi:application URL_PATH="/items?n=10"
	TITLE="Django view with a small template, default middleware (GET $URL_PATH)"
	;;
asgi)
	SERVERS=${SERVERS:-krait-asgi uvicorn hypercorn gunicorn-uvicorn granian-asgi}
	export BENCH_REF=krait-asgi
	ASGI_APP=hello_asgi:app
	TITLE="ASGI hello world"
	;;
ws)
	SERVERS=${SERVERS:-krait-asgi uvicorn hypercorn gunicorn-uvicorn granian-asgi}
	export BENCH_REF=krait-asgi
	ASGI_APP=hello_asgi:app
	;;
*)
	echo "run.sh: SUITE=$SUITE is not one of wsgi, flask, django, asgi, ws" >&2
	exit 2
	;;
esac
WS_SIZE=${WS_SIZE:-13}
KRAIT_BIN=${KRAIT_BIN:-}
PYTHON=${PYTHON:-python3}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
READY_TIMEOUT=${READY_TIMEOUT:-60}
PROFILE=${PROFILE:-0}
VENV="$HERE/.venv"
APPS="$HERE/apps"
BODY_FILE="" # what GET URL_PATH must answer for a server to count as ready

OUT="$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ln -sfn "$(basename "$OUT")" "$HERE/results/latest"

declare -A PIDS=() PORTS=() READY=()
TMP=""
ORDER=()

say() { printf '==> %s\n' "$*"; }
lib() { "$PYTHON" "$HERE/benchlib.py" "$@"; }

# fail NAME REASON: mark a server as failed; the run goes on without it.
fail() {
	say "$1: FAILED: $2"
	printf '%s\n' "$2" >"$OUT/$1.status"
}
failed() { [[ -f $OUT/$1.status && $(<"$OUT/$1.status") != ok ]]; }

# stop_server PID: TERM the server's process group (setsid made PID its
# leader), wait for the leader, then KILL whatever of the group is left.
stop_server() {
	local pid=$1
	kill -TERM -- "-$pid" 2>/dev/null || true
	(
		sleep 20
		kill -KILL -- "-$pid" 2>/dev/null
	) &
	local watchdog=$!
	wait "$pid" 2>/dev/null || true
	kill "$watchdog" 2>/dev/null || true
	wait "$watchdog" 2>/dev/null || true
	kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
	local name
	if [[ -n ${WRK_PID:-} ]]; then kill "$WRK_PID" 2>/dev/null || true; fi
	if [[ -n ${PERF_PID:-} ]]; then kill -INT "$PERF_PID" 2>/dev/null || true; fi
	for name in "${!PIDS[@]}"; do
		stop_server "${PIDS[$name]}"
	done
	PIDS=()
	if [[ -n $TMP ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v wrk >/dev/null || {
	echo "run.sh: wrk not found (apt-get install wrk)" >&2
	exit 1
}
command -v taskset >/dev/null || {
	echo "run.sh: taskset not found (util-linux)" >&2
	exit 1
}

# --- peers' venv, reinstalled when requirements.txt changes ---------------
PEERS_ERROR=""
setup_venv() {
	local want stamp="$VENV/.requirements.sha256"
	want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
	if [[ -x $VENV/bin/python && -f $stamp && $(<"$stamp") == "$want" ]]; then
		return 0
	fi
	say "installing peers into $VENV (log: $OUT/pip.log)"
	if ! { [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"; } >"$OUT/pip.log" 2>&1; then
		PEERS_ERROR="could not create $VENV (see pip.log)"
		return 1
	fi
	if ! "$VENV/bin/python" -m pip install -r "$HERE/requirements.txt" >>"$OUT/pip.log" 2>&1; then
		PEERS_ERROR="pip install -r bench/requirements.txt failed (see pip.log)"
		return 1
	fi
	echo "$want" >"$stamp"
}
setup_venv || say "peers unavailable: $PEERS_ERROR"
WORKER_PY="$PYTHON"
if [[ -z $PEERS_ERROR ]]; then WORKER_PY="$VENV/bin/python"; fi

# --- krait binary ----------------------------------------------------------
KRAIT_ERROR=""
if [[ -z $KRAIT_BIN ]]; then
	TMP=$(mktemp -d)
	KRAIT_BIN="$TMP/krait"
	say "building krait (log: $OUT/build.log)"
	if ! (cd "$ROOT" && go build -o "$KRAIT_BIN" ./cmd/krait) >"$OUT/build.log" 2>&1; then
		KRAIT_ERROR="go build ./cmd/krait failed (see build.log)"
	fi
elif [[ ! -x $KRAIT_BIN ]]; then
	KRAIT_ERROR="KRAIT_BIN=$KRAIT_BIN is not an executable"
fi

# --- WebSocket load generator (SUITE=ws) ------------------------------------
WSLOAD=""
if [[ $SUITE == ws ]]; then
	if [[ -z $TMP ]]; then TMP=$(mktemp -d); fi
	WSLOAD="$TMP/wsload"
	say "building bench/wsload (log: $OUT/build-wsload.log)"
	if ! (cd "$ROOT" && go build -o "$WSLOAD" ./bench/wsload) >"$OUT/build-wsload.log" 2>&1; then
		echo "run.sh: go build ./bench/wsload failed (see $OUT/build-wsload.log)" >&2
		exit 1
	fi
fi

# --- environment record ----------------------------------------------------
{
	echo "date: $(date -u +%FT%TZ)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
	echo "kernel: $(uname -r)"
	echo "wrk: $(wrk --version 2>&1 | head -1)"
	echo "python: $("$WORKER_PY" -VV 2>&1 | head -1)"
	echo "go: $(go version 2>/dev/null || echo '?')"
	echo "krait: $KRAIT_BIN $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
	if [[ -z $PEERS_ERROR ]]; then "$VENV/bin/python" -m pip freeze 2>/dev/null | sed 's/^/peer: /'; fi
	env | grep -E '^GRANIAN_' | sed 's/^/granian env: /' || true
	echo "settings: SUITE=$SUITE URL_PATH=$URL_PATH WS_SIZE=$WS_SIZE DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS PICK=$PICK SERVER_CPU=$SERVER_CPU WRK_CPU=$WRK_CPU"
} >"$OUT/env.txt"

# The harness's own accounting, checked on known inputs (a second, no more).
if ! lib selftest >"$OUT/selftest.txt" 2>&1; then
	say "warning: benchlib.py selftest failed, the per-request columns may be wrong: $(tr '\n' ' ' <"$OUT/selftest.txt")"
fi

# --- the body every server must answer ----------------------------------------
# Hello world is known; a framework's page is whatever its app answers when
# called in-process (the peers' venv has the frameworks), so every server
# is checked to serve the very same page before it is measured.
APP_ERROR=""
BODY_FILE="$OUT/expected-body"
if [[ $WSGI_APP == hello_wsgi:* || -z $WSGI_APP ]]; then
	printf 'Hello, World!' >"$BODY_FILE"
elif [[ -n $PEERS_ERROR ]]; then
	APP_ERROR="$WSGI_APP needs the peers' venv: $PEERS_ERROR"
elif ! (cd "$APPS" && "$VENV/bin/python" "$HERE/benchlib.py" expect "$APPS" "$WSGI_APP" "$URL_PATH") \
	>"$BODY_FILE" 2>"$OUT/expected-body.log"; then
	APP_ERROR="$WSGI_APP failed in-process (see expected-body.log): $(tail -n 1 "$OUT/expected-body.log")"
fi

# --- servers ---------------------------------------------------------------

# start_server NAME LABEL READY_REGEX CMD...: start CMD pinned to SERVER_CPU
# in its own session; @PORT@ in CMD becomes a free port. READY_REGEX, when
# not empty, must appear in the server's log before it counts as ready.
start_server() {
	local name=$1 label=$2 ready=$3 port a
	shift 3
	port=$(lib port)
	local args=()
	for a in "$@"; do args+=("${a//@PORT@/$port}"); done
	printf '%s\n' "$label" >"$OUT/$name.label"
	printf '%q ' "${args[@]}" >"$OUT/$name.cmd"
	echo >>"$OUT/$name.cmd"
	say "$name: starting on port $port: ${args[*]}"
	setsid taskset -c "$SERVER_CPU" "${args[@]}" >"$OUT/$name.log" 2>&1 </dev/null &
	PIDS[$name]=$!
	PORTS[$name]=$port
	READY[$name]=$ready
}

# wait_ready NAME: poll until the ready line is logged and GET URL_PATH
# answers 200 with the expected body; fail the server if it exits or times out.
wait_ready() {
	local name=$1 pid=${PIDS[$1]} url="http://127.0.0.1:${PORTS[$1]}$URL_PATH"
	local deadline=$((SECONDS + READY_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null || [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]]; then
			fail "$name" "exited while starting (see $name.log): $(tail -n 3 "$OUT/$name.log" | tr '\n' ' ')"
			return 1
		fi
		if [[ -z ${READY[$name]} ]] || grep -Eq -- "${READY[$name]}" "$OUT/$name.log"; then
			if lib probe "$url" "$BODY_FILE" 2>"$OUT/$name.probe.txt"; then
				curl -s -o /dev/null -D "$OUT/$name.headers.txt" "$url" || true
				echo ok >"$OUT/$name.status"
				say "$name: ready"
				return 0
			fi
		fi
		sleep 0.1 # poll interval, not a readiness guess
	done
	fail "$name" "not ready within ${READY_TIMEOUT}s (see $name.log); last probe: $(cat "$OUT/$name.probe.txt" 2>/dev/null)"
	return 1
}

# skip NAME LABEL REASON: a server that cannot start; the others still run.
skip() {
	printf '%s\n' "$2" >"$OUT/$1.label"
	fail "$1" "$3"
}

# Granian's own GRANIAN_* settings pass through; the label says so.
GRANIAN_ENV=$(env | grep -E '^GRANIAN_' | sort | tr '\n' ' ' || true)
GRANIAN_NOTE="Granian's defaults"
if [[ -n $GRANIAN_ENV ]]; then GRANIAN_NOTE="${GRANIAN_ENV% }"; fi

for name in $SERVERS; do
	ready="" label="" cmd=() needs_peers=1
	case $name in
	krait-b) # the suite's app: ASGI for SUITE=asgi|ws
		if [[ -n $WSGI_APP ]]; then app=$WSGI_APP iface=WSGI; else app=$ASGI_APP iface=ASGI; fi ;;
	krait | gunicorn-sync | gunicorn-gthread | granian) app=$WSGI_APP iface=WSGI ;;
	krait-asgi | uvicorn | hypercorn | gunicorn-uvicorn | granian-asgi) app=$ASGI_APP iface=ASGI ;;
	*)
		echo "run.sh: unknown server $name in SERVERS" >&2
		exit 2
		;;
	esac
	case $name in
	krait)
		label="krait (1 worker, 1 thread)"
		ready='msg=ready|"msg":"ready"' needs_peers=0
		cmd=("$KRAIT_BIN" serve "$app" -b 127.0.0.1:@PORT@ -w 1 --threads 1
			--python "$WORKER_PY" --chdir "$APPS")
		;;
	krait-b)
		# A second krait binary, to A/B a change against KRAIT_BIN.
		label="krait B: ${KRAIT_BIN_B:-unset} (1 worker, 1 thread)"
		ready='msg=ready|"msg":"ready"' needs_peers=0
		cmd=("${KRAIT_BIN_B:-}" serve "$app" -b 127.0.0.1:@PORT@ -w 1 --threads 1
			--python "$WORKER_PY" --chdir "$APPS")
		;;
	krait-asgi)
		label="krait ASGI (1 worker)"
		ready='msg=ready|"msg":"ready"' needs_peers=0
		cmd=("$KRAIT_BIN" serve "$app" -b 127.0.0.1:@PORT@ -w 1 --threads 1
			--python "$WORKER_PY" --chdir "$APPS")
		;;
	gunicorn-sync | gunicorn-gthread)
		if [[ $name == gunicorn-sync ]]; then
			label="gunicorn sync (1 worker)"
			kind=(--worker-class sync)
		else
			label="gunicorn gthread (1 worker, 2 threads)"
			kind=(--worker-class gthread --threads 2)
		fi
		cmd=("$VENV/bin/gunicorn" --workers 1 "${kind[@]}" --bind 127.0.0.1:@PORT@
			--no-control-socket --chdir "$APPS" "$app")
		;;
	uvicorn)
		label="uvicorn httptools+uvloop (1 worker, raw ASGI)"
		cmd=("$VENV/bin/uvicorn" "$app" --app-dir "$APPS" --host 127.0.0.1 --port @PORT@
			--workers 1 --http httptools --loop uvloop --no-access-log --log-level warning)
		;;
	hypercorn)
		label="hypercorn uvloop (1 worker, raw ASGI)"
		cmd=(env PYTHONPATH="$APPS" "$VENV/bin/hypercorn" "$app" --bind 127.0.0.1:@PORT@
			--workers 1 --worker-class uvloop --log-level warning)
		;;
	gunicorn-uvicorn)
		label="gunicorn + uvicorn worker (1 worker, raw ASGI)"
		cmd=("$VENV/bin/gunicorn" --workers 1 --worker-class uvicorn.workers.UvicornWorker
			--bind 127.0.0.1:@PORT@ --no-control-socket --chdir "$APPS" "$app")
		;;
	granian | granian-asgi)
		# One worker and otherwise Granian's defaults, as the issue measured
		# it: WSGI runs the app on blocking threads (up to backpressure/2 =
		# 512 with one worker), ASGI on --loop auto (uvloop, installed here).
		if [[ $name == granian ]]; then
			label="Granian WSGI (1 worker, $GRANIAN_NOTE)"
		else
			label="Granian ASGI (1 worker, $GRANIAN_NOTE)"
		fi
		cmd=("$VENV/bin/granian" --interface "${iface,,}" --workers 1 --host 127.0.0.1 --port @PORT@
			--working-dir "$APPS" "$app")
		;;
	esac
	reason=""
	if [[ -n $APP_ERROR ]]; then
		reason=$APP_ERROR
	elif [[ -z $app ]]; then
		reason="SUITE=$SUITE has no $iface app"
	elif [[ $name == krait-b && (-z ${KRAIT_BIN_B:-} || ! -x ${KRAIT_BIN_B:-}) ]]; then
		reason="set KRAIT_BIN_B to a krait binary"
	elif [[ $name == krait || $name == krait-asgi ]] && [[ -n $KRAIT_ERROR ]]; then
		reason=$KRAIT_ERROR
	elif ((needs_peers)) && [[ -n $PEERS_ERROR ]]; then
		reason=$PEERS_ERROR
	elif [[ $name == gunicorn-uvicorn ]] && ! "$VENV/bin/python" -c 'import uvicorn.workers' >/dev/null 2>&1; then
		reason="uvicorn.workers is not importable in $VENV (uvicorn without its gunicorn worker)"
	fi
	if [[ -n $reason ]]; then
		skip "$name" "$label" "$reason"
	else
		start_server "$name" "$label" "$ready" "${cmd[@]}"
	fi
	ORDER+=("$name")
done

for name in "${ORDER[@]}"; do
	if [[ -n ${PIDS[$name]:-} ]]; then wait_ready "$name" || true; fi
done

# --- measurements ----------------------------------------------------------

# wrk_run DURATION URL OUTFILE. wrk runs in the background so that a signal
# reaches our trap at once (bash runs traps only between foreground commands).
WRK_PID="" PERF_PID=""
wrk_run() {
	if [[ $SUITE == ws ]]; then
		# wsload prints wrk's layout (Requests/sec = echoed messages/s).
		taskset -c "$WRK_CPU" "$WSLOAD" -c "$CONNECTIONS" -d "$1" -size "$WS_SIZE" "${2/#http:/ws:}ws" >"$3" 2>&1 &
	else
		taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$1" --latency "$2" >"$3" 2>&1 &
	fi
	WRK_PID=$!
	local rc=0
	wait "$WRK_PID" || rc=$?
	WRK_PID=""
	return "$rc"
}

# measure NAME ROUND: warm-up, then a measured run with the server tree's
# CPU time sampled before and after.
measure() {
	local name=$1 r=$2 url="http://127.0.0.1:${PORTS[$1]}$URL_PATH" pid=${PIDS[$1]} t0 t1
	say "$name: round $r: warm-up $WARMUP, then $DURATION"
	wrk_run "$WARMUP" "$url" "$OUT/$name.warmup.r$r.txt" || true
	lib cpu "$pid" "$SERVER_CPU" "$WRK_CPU" >"$OUT/$name.r$r.cpu0.json"
	t0=$(date +%s.%N)
	if ! wrk_run "$DURATION" "$url" "$OUT/$name.r$r.txt"; then
		fail "$name" "wrk failed: $(tail -n 2 "$OUT/$name.r$r.txt" | tr '\n' ' ')"
		return 1
	fi
	t1=$(date +%s.%N)
	lib cpu "$pid" "$SERVER_CPU" "$WRK_CPU" >"$OUT/$name.r$r.cpu1.json"
	lib cpudelta "$OUT/$name.r$r.cpu0.json" "$OUT/$name.r$r.cpu1.json" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >"$OUT/$name.r$r.cpu.json"
	rm -f "$OUT/$name.r$r.cpu0.json" "$OUT/$name.r$r.cpu1.json"
	if ! kill -0 "$pid" 2>/dev/null || [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]]; then
		fail "$name" "exited during the measurement (see $name.log)"
		return 1
	fi
	grep -E '^Requests/sec' "$OUT/$name.r$r.txt" | sed "s/^/    $name: /" || true
}

for ((r = 1; r <= ROUNDS; r++)); do
	for name in "${ORDER[@]}"; do
		if failed "$name" || [[ -z ${PIDS[$name]:-} ]]; then continue; fi
		measure "$name" "$r" || true
	done
done

if [[ $PROFILE == 1 ]]; then PROFILE=krait; fi
if [[ $PROFILE != 0 && -n $PROFILE ]]; then
	p=$PROFILE
	if [[ -z ${PIDS[$p]:-} ]] || failed "$p"; then
		say "PROFILE=$p: no such server running"
	elif ! command -v perf >/dev/null; then
		say "PROFILE=$p: perf is not installed"
	else
		say "$p: profiling one more $DURATION run with perf record -g on core $SERVER_CPU"
		perf record -q -g -C "$SERVER_CPU" -o "$OUT/$p.perf.data" >"$OUT/$p.perf.log" 2>&1 &
		PERF_PID=$!
		sleep 0.5 # let perf attach; the profile need not cover the first instant
		wrk_run "$DURATION" "http://127.0.0.1:${PORTS[$p]}$URL_PATH" "$OUT/$p.profiled.txt" || true
		kill -INT "$PERF_PID" 2>/dev/null || true
		wait "$PERF_PID" 2>/dev/null || true
		PERF_PID=""
		# Reports are made now, while the binary (maybe in a temp dir) exists.
		perf report -i "$OUT/$p.perf.data" --stdio --no-children -g none --sort comm,dso \
			>"$OUT/$p.perf-dso.txt" 2>>"$OUT/$p.perf.log" || true
		perf report -i "$OUT/$p.perf.data" --stdio --no-children -g none --percent-limit 0.3 \
			--sort comm,dso,sym >"$OUT/$p.perf.txt" 2>>"$OUT/$p.perf.log" || true
		perf report -i "$OUT/$p.perf.data" --stdio --children -g none --percent-limit 1 \
			--sort comm,sym >"$OUT/$p.perf-children.txt" 2>>"$OUT/$p.perf.log" || true
		say "perf reports: $OUT/$p.perf*.txt (the profiled run is not in the table)"
	fi
fi

cleanup
trap - EXIT

echo
case $SUITE in
ws) echo "WebSocket echo of $WS_SIZE byte messages (requests/s = messages/s), 1 worker per server on core $SERVER_CPU, wsload -c $CONNECTIONS -d $DURATION on core $WRK_CPU ($PICK of $ROUNDS)" ;;
*) echo "$TITLE, 1 worker per server on core $SERVER_CPU, wrk -t1 -c$CONNECTIONS -d$DURATION on core $WRK_CPU ($PICK of $ROUNDS)" ;;
esac
lib report "$OUT" "${ORDER[@]}"
echo
echo "raw wrk outputs and logs: $OUT"
