#!/usr/bin/env bash
# bench/static/run.sh: one static file, krait (--static) against nginx.
#
# Both servers serve the same SIZE-byte file (default 15000, a typical CSS
# bundle) from the same directory, on one core each (taskset -c SERVER_CPU,
# whole process tree), with wrk -t1 -cCONNECTIONS on another core
# (WRK_CPU). Each server gets a warm-up run, then ROUNDS measured runs of
# DURATION, interleaved (krait, nginx, krait, ...); the median requests/s
# of each and krait's ratio to nginx are printed, and the same for the CPU
# time each server's process tree used per request (from /proc: utime +
# stime), which holds better than requests/s when other work shares the
# cores: "cpu ratio" is nginx's CPU per request over krait's, the
# requests/s ratio the two would have on one otherwise idle core each.
#
#   bash bench/static/run.sh               # about 30 s in all
#   KRAIT_BIN=/tmp/krait bash bench/static/run.sh
#   KRAIT_BIN=/tmp/krait KRAIT_BIN_B=/tmp/krait-baseline bash bench/static/run.sh
#
# KRAIT_BIN_B adds a second krait binary (say, the baseline) as a third
# server in the same rounds (krait, krait-b, nginx, krait, ...): the fair
# before/after on a shared, noisy machine, where back-to-back runs differ
# more than the change measured. Its ratios to nginx and to krait are
# printed too. When other work shares SERVER_CPU, requests/s also
# measures how much of the core each server wins from that work (the
# kernel shares a core between threads, not processes: a server whose
# work hops between several threads gets more of it than one running on
# a single thread, as nginx and krait's raw-I/O engine do); CPU per
# request does not depend on that.
#
# Env: DURATION (4s), WARMUP (1s), ROUNDS (3), CONNECTIONS (64), SIZE (15000),
# SERVER_CPU (0), WRK_CPU (1), PYTHON (.venv/bin/python, else python3),
# NGINX (nginx on PATH or /usr/sbin/nginx).
#
# nginx runs as a foreground process (daemon off, one worker) with a
# generated config: sendfile, tcp_nopush, open_file_cache, no access log,
# keep-alive without a request cap, expires 1h (Cache-Control like krait's
# --static-max-age). Needs wrk, taskset, nginx (apt-get install -y nginx wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-4s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SIZE=${SIZE:-15000}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=$PWD/.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
for tool in wrk taskset curl "$NGINX"; do
  command -v "$tool" >/dev/null || { echo "bench/static: $tool not found (apt-get install -y nginx wrk)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${KRAIT_BIN:-}" ]]; then
  KRAIT_BIN=$WORK/krait
  go build -o "$KRAIT_BIN" ./cmd/krait
fi

# The file: printable, not all one byte, exactly SIZE bytes.
mkdir -p "$WORK/www/static"
"$PYTHON" - "$WORK/www/static/app.css" "$SIZE" <<'PY'
import sys
path, size = sys.argv[1], int(sys.argv[2])
line = b".c%05d { color: #%06x; margin: 0 auto; }\n"
out = bytearray()
i = 0
while len(out) < size:
    out += line % (i, (i * 2654435761) & 0xFFFFFF)
    i += 1
open(path, "wb").write(bytes(out[:size]))
PY
chmod -R a+rX "$WORK"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready URL: the file answers 200 with SIZE bytes.
wait_ready() {
  for _ in $(seq 400); do
    if [[ $(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$1" 2>/dev/null) == "200 $SIZE" ]]; then
      return 0
    fi
    sleep 0.05
  done
  echo "bench/static: $1 never answered 200 with $SIZE bytes" >&2
  return 1
}

KPORT=$(free_port)
taskset -c "$SERVER_CPU" "$KRAIT_BIN" serve app:application --chdir bench/static --python "$PYTHON" \
  -w 1 -b "127.0.0.1:$KPORT" --static "/static=$WORK/www/static" --static-max-age 3600 \
  --error-logfile "$WORK/krait.log" &
KPID=$!
PIDS+=($KPID)

NPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
$( [[ $(id -u) == 0 ]] && echo "user root;" )
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 1s;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  types { text/css css; }
  server {
    listen 127.0.0.1:$NPORT;
    location /static/ {
      alias $WORK/www/static/;
      expires 1h;
    }
  }
}
NGX
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NPID=$!
PIDS+=($NPID)

if [[ -n "${KRAIT_BIN_B:-}" ]]; then
  BPORT=$(free_port)
  taskset -c "$SERVER_CPU" "$KRAIT_BIN_B" serve app:application --chdir bench/static --python "$PYTHON" \
    -w 1 -b "127.0.0.1:$BPORT" --static "/static=$WORK/www/static" --static-max-age 3600 \
    --error-logfile "$WORK/krait-b.log" &
  BPID=$!
  PIDS+=($BPID)
  BURL="http://127.0.0.1:$BPORT/static/app.css"
fi

KURL="http://127.0.0.1:$KPORT/static/app.css"
NURL="http://127.0.0.1:$NPORT/static/app.css"
wait_ready "$KURL"
wait_ready "$NURL"
if [[ -n "${BURL:-}" ]]; then wait_ready "$BURL"; fi

# tree_ticks PID: CPU clock ticks (utime + stime) of PID and its descendants.
tree_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    # Fields after the command name (which may hold spaces): utime is 14, stime 15.
    total=$((total + $(sed -E 's/^.*\) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# run URL DURATION PID: prints "requests/s cpu_us_per_request"; fails on
# errors or non-2xx answers.
run() {
  local out before after
  before=$(tree_ticks "$3")
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2" "$1")
  after=$(tree_ticks "$3")
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "bench/static: errors against $1:" >&2
    echo "$out" >&2
    return 1
  fi
  awk -v t=$((after - before)) -v hz="$HZ" '
    /^Requests\/sec:/ {rps = $2}
    / requests in / {n = $1}
    END {printf "%s %.2f\n", rps, t / hz * 1e6 / n}' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

run "$KURL" "$WARMUP" "$KPID" >/dev/null
if [[ -n "${BURL:-}" ]]; then run "$BURL" "$WARMUP" "$BPID" >/dev/null; fi
run "$NURL" "$WARMUP" "$NPID" >/dev/null
K=() N=() KC=() NC=() B=() BC=()
for r in $(seq "$ROUNDS"); do
  read -r rps cpu < <(run "$KURL" "$DURATION" "$KPID")
  K+=("$rps") KC+=("$cpu")
  line="round $r: krait ${K[-1]} req/s ${KC[-1]} us CPU/req"
  if [[ -n "${BURL:-}" ]]; then
    read -r rps cpu < <(run "$BURL" "$DURATION" "$BPID")
    B+=("$rps") BC+=("$cpu")
    line+=", krait-b ${B[-1]} req/s ${BC[-1]} us CPU/req"
  fi
  read -r rps cpu < <(run "$NURL" "$DURATION" "$NPID")
  N+=("$rps") NC+=("$cpu")
  echo "$line, nginx ${N[-1]} req/s ${NC[-1]} us CPU/req"
done
km=$(median "${K[@]}") nm=$(median "${N[@]}")
kc=$(median "${KC[@]}") nc=$(median "${NC[@]}")
ratios() { # NAME RPS CPU: the ratios of a krait row to nginx
  echo "ratio  $1: $(awk -v k="$2" -v n="$nm" 'BEGIN {printf "%.2f", k / n}')x nginx requests/s;  cpu ratio $(awk -v k="$3" -v n="$nc" 'BEGIN {printf "%.2f", n / k}')x"
}
echo "file=${SIZE}B connections=$CONNECTIONS duration=$DURATION rounds=$ROUNDS server_cpu=$SERVER_CPU wrk_cpu=$WRK_CPU"
echo "krait    $(printf '%.0f' "$km") req/s  $kc us CPU/req (medians)   $("$KRAIT_BIN" version 2>/dev/null | head -n1)  $KRAIT_BIN"
if [[ -n "${BURL:-}" ]]; then
  bm=$(median "${B[@]}") bc=$(median "${BC[@]}")
  echo "krait-b  $(printf '%.0f' "$bm") req/s  $bc us CPU/req (medians)   $("$KRAIT_BIN_B" version 2>/dev/null | head -n1)  $KRAIT_BIN_B"
fi
echo "nginx    $(printf '%.0f' "$nm") req/s  $nc us CPU/req (medians)   $("$NGINX" -v 2>&1)"
ratios krait "$km" "$kc"
if [[ -n "${BURL:-}" ]]; then
  ratios krait-b "$bm" "$bc"
  echo "ratio  krait/krait-b: $(awk -v k="$km" -v b="$bm" 'BEGIN {printf "%.2f", k / b}')x requests/s;  cpu per request $(awk -v k="$kc" -v b="$bc" 'BEGIN {printf "%.2f", b / k}')x"
fi
