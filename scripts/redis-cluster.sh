#!/usr/bin/env bash
# A 3-node Redis Cluster on loopback for the tests: `start` (idempotent: a running, healthy
# cluster is reused), `stop`, `urls` (what to put in REDIS_CLUSTER_URLS).
#
#   export REDIS_CLUSTER_URLS="$(bash scripts/redis-cluster.sh start)"
#
# Anything else on those ports (a node down, a broken earlier run) is shut down and the
# cluster made again from scratch: use ports nothing else runs Redis on.
# Ports: REDIS_CLUSTER_PORTS (default "7001 7002 7003"). Files: REDIS_CLUSTER_DIR (default
# /tmp/tower-oauth-redis-cluster). No persistence, no replicas. Progress goes to stderr; the
# only stdout line of `start` and `urls` is the comma-separated list of node URLs.
set -euo pipefail

PORTS=(${REDIS_CLUSTER_PORTS:-7001 7002 7003})
DIR="${REDIS_CLUSTER_DIR:-/tmp/tower-oauth-redis-cluster}"
FIRST="${PORTS[0]}"

say() { printf '%s\n' "$*" >&2; }

urls() {
  local out=() p
  for p in "${PORTS[@]}"; do out+=("redis://127.0.0.1:$p"); done
  (IFS=,; printf '%s\n' "${out[*]}")
}

ping() { redis-cli -h 127.0.0.1 -p "$1" ping >/dev/null 2>&1; }

state_ok() {
  redis-cli -h 127.0.0.1 -p "$FIRST" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'
}

known_nodes() {
  redis-cli -h 127.0.0.1 -p "$FIRST" cluster info 2>/dev/null | tr -d '\r' \
    | sed -n 's/^cluster_known_nodes://p'
}

all_up() {
  local p
  for p in "${PORTS[@]}"; do ping "$p" || return 1; done
}

start() {
  if all_up && state_ok && [ "$(known_nodes)" = "${#PORTS[@]}" ]; then
    say "Redis Cluster already up on ports ${PORTS[*]}"
    urls
    return
  fi
  # Anything less than a healthy cluster of all the nodes (one node down, a broken earlier
  # run) is started again from scratch: the data is only test data.
  stop
  mkdir -p "$DIR"
  local p
  for p in "${PORTS[@]}"; do
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$DIR/nodes-$p.conf" --cluster-node-timeout 5000 \
      --daemonize yes --save "" --appendonly no --dir "$DIR" \
      --logfile "$DIR/redis-$p.log" --pidfile "$DIR/redis-$p.pid"
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 1 50); do ping "$p" && break; sleep 0.1; done
    ping "$p" || { say "redis-server on port $p did not start; see $DIR/redis-$p.log"; exit 1; }
  done
  local nodes=()
  for p in "${PORTS[@]}"; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >&2
  for _ in $(seq 1 100); do
    if state_ok; then
      say "Redis Cluster up on ports ${PORTS[*]}"
      urls
      return
    fi
    sleep 0.1
  done
  say "Redis Cluster not ok after 10 s:"
  redis-cli -h 127.0.0.1 -p "$FIRST" cluster info >&2 || true
  exit 1
}

stop() {
  local p
  for p in "${PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 1 50); do ping "$p" || break; sleep 0.1; done
    rm -f "$DIR/nodes-$p.conf"
  done
  say "Redis Cluster on ports ${PORTS[*]} stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  urls) urls ;;
  *) say "usage: $0 start|stop|urls"; exit 2 ;;
esac
