#!/usr/bin/env bash
# bench/tls/run.sh: full TLS handshakes per second, krait against nginx.
#
# Each client connection (bench/tls/hs, a small Go client) does one full
# TLS handshake (no session resumption), one GET of a SIZE-byte static file
# with "Connection: close", reads the answer and the server's close, and
# starts over: so requests/s here is handshakes/s. Two certificates are
# generated: ECDSA P-256 and RSA 2048. krait (--static, one worker, served
# from Go) and nginx (one worker process) each run on one core (taskset -c
# SERVER_CPU, whole process tree), the client on another (CLIENT_CPU).
# Per certificate: a warm-up run each, then ROUNDS measured runs of
# DURATION, interleaved (krait, nginx, krait, ...); medians and krait's
# ratio to nginx are printed, and the same for the server CPU time per
# handshake (from /proc: utime + stime of the process tree), which holds
# better than handshakes/s when other work shares the cores or the client
# is the bottleneck: "cpu ratio" is nginx's CPU per handshake over krait's
# (krait's tree includes its one idle Python worker).
#
#   bash bench/tls/run.sh                  # about 70 s in all
#   KRAIT_BIN=/tmp/krait DURATION=10s bash bench/tls/run.sh
#
# Env: DURATION (5s), WARMUP (1s), ROUNDS (3), CONNECTIONS (16), SIZE (100),
# TLS (1.3, or 1.2), CURVE (x25519, or p256: the key exchange), CERTS
# ("ecdsa rsa"), SERVER_CPU (0), CLIENT_CPU (1), PYTHON (.venv/bin/python,
# else python3), NGINX (nginx on PATH or /usr/sbin/nginx).
#
# Both servers keep their default session tickets (unused: the client keeps
# no session cache). nginx: ssl_protocols TLSv1.2 TLSv1.3, no session cache,
# access log off. Needs go, openssl, taskset, curl, nginx (apt-get install -y nginx).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
SIZE=${SIZE:-100}
TLS=${TLS:-1.3}
CURVE=${CURVE:-x25519}
CERTS=${CERTS:-ecdsa rsa}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=$PWD/.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
for tool in go openssl taskset curl "$NGINX"; do
  command -v "$tool" >/dev/null || { echo "bench/tls: $tool not found (apt-get install -y nginx openssl curl)" >&2; exit 1; }
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
HS=$WORK/hs
go build -o "$HS" ./bench/tls/hs

mkdir -p "$WORK/www/static" "$WORK/nginx"
head -c "$SIZE" /dev/zero | tr '\0' 'x' >"$WORK/www/static/hs.txt"
chmod -R a+rX "$WORK"

for c in $CERTS; do
  case $c in
    ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    *) echo "bench/tls: unknown cert type $c (ecdsa, rsa)" >&2; exit 1 ;;
  esac
  openssl req -x509 "${newkey[@]}" -nodes -days 2 -keyout "$WORK/$c.key" -out "$WORK/$c.pem" \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
done
chmod a+r "$WORK"/*.key "$WORK"/*.pem

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready URL: the file answers 200 with SIZE bytes over TLS.
wait_ready() {
  for _ in $(seq 400); do
    if [[ $(curl -sk -o /dev/null -w '%{http_code} %{size_download}' "$1" 2>/dev/null) == "200 $SIZE" ]]; then
      return 0
    fi
    sleep 0.05
  done
  echo "bench/tls: $1 never answered 200 with $SIZE bytes" >&2
  return 1
}

# One krait per certificate (krait takes one --certfile); one nginx with a
# server block per certificate.
declare -A KPORT KPID NPORT
servers=""
for c in $CERTS; do
  KPORT[$c]=$(free_port)
  taskset -c "$SERVER_CPU" "$KRAIT_BIN" serve app:application --chdir bench/static --python "$PYTHON" \
    -w 1 -b "127.0.0.1:${KPORT[$c]}" --static "/static=$WORK/www/static" \
    --certfile "$WORK/$c.pem" --keyfile "$WORK/$c.key" --error-logfile "$WORK/krait-$c.log" &
  KPID[$c]=$!
  PIDS+=(${KPID[$c]})
  NPORT[$c]=$(free_port)
  servers+="
  server {
    listen 127.0.0.1:${NPORT[$c]} ssl;
    ssl_certificate $WORK/$c.pem;
    ssl_certificate_key $WORK/$c.key;
    location /static/ { alias $WORK/www/static/; }
  }"
done
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
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache off;
  keepalive_timeout 60s;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  types { text/plain txt; }
$servers
}
NGX
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NPID=$!
PIDS+=($NPID)

for c in $CERTS; do
  wait_ready "https://127.0.0.1:${KPORT[$c]}/static/hs.txt"
  wait_ready "https://127.0.0.1:${NPORT[$c]}/static/hs.txt"
done

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

# run PORT DURATION PID: prints "handshakes/s cpu_us_per_handshake"; fails
# when any connection failed (hs exits 1).
LAST=""
run() {
  local out before after
  before=$(tree_ticks "$3")
  out=$(taskset -c "$CLIENT_CPU" "$HS" -addr "127.0.0.1:$1" -path /static/hs.txt -c "$CONNECTIONS" \
    -d "$2" -tls "$TLS" -curve "$CURVE") || { echo "bench/tls: errors against port $1: $out" >&2; return 1; }
  after=$(tree_ticks "$3")
  echo "$out" >"$WORK/last"
  awk -v t=$((after - before)) -v hz="$HZ" '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    sub(/\/s$/, "", v["rate"])
    printf "%s %.1f\n", v["rate"], t / hz * 1e6 / v["handshakes"]}' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "tls=$TLS curve=$CURVE file=${SIZE}B connections=$CONNECTIONS duration=$DURATION rounds=$ROUNDS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
echo "krait: $("$KRAIT_BIN" version 2>/dev/null | head -n1)   nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(openssl version)"
for c in $CERTS; do
  run "${KPORT[$c]}" "$WARMUP" "${KPID[$c]}" >/dev/null
  echo "$c krait:  $(sed 's/^handshakes=[0-9]* errors=[0-9]* seconds=[0-9.]* rate=[0-9.]*\/s //' "$WORK/last")"
  run "${NPORT[$c]}" "$WARMUP" "$NPID" >/dev/null
  echo "$c nginx:  $(sed 's/^handshakes=[0-9]* errors=[0-9]* seconds=[0-9.]* rate=[0-9.]*\/s //' "$WORK/last")"
  K=() N=() KC=() NC=()
  # res=$(run ...), not read < <(run ...): set -e then stops on run's own status.
  for r in $(seq "$ROUNDS"); do
    res=$(run "${KPORT[$c]}" "$DURATION" "${KPID[$c]}")
    read -r rps cpu <<<"$res"
    K+=("$rps") KC+=("$cpu")
    res=$(run "${NPORT[$c]}" "$DURATION" "$NPID")
    read -r rps cpu <<<"$res"
    N+=("$rps") NC+=("$cpu")
    echo "$c round $r: krait ${K[-1]} hs/s ${KC[-1]} us CPU/hs, nginx ${N[-1]} hs/s ${NC[-1]} us CPU/hs"
  done
  km=$(median "${K[@]}") nm=$(median "${N[@]}")
  kc=$(median "${KC[@]}") nc=$(median "${NC[@]}")
  echo "$c krait  $(printf '%.0f' "$km") hs/s  $kc us CPU/hs (medians)"
  echo "$c nginx  $(printf '%.0f' "$nm") hs/s  $nc us CPU/hs (medians)"
  echo "$c ratio  $(awk -v k="$km" -v n="$nm" 'BEGIN {printf "%.2f", k / n}')x nginx handshakes/s;  cpu ratio $(awk -v k="$kc" -v n="$nc" 'BEGIN {printf "%.2f", n / k}')x"
done
