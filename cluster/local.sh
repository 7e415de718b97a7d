#!/usr/bin/env bash
# A two-node Ray cluster on one machine, for tests and demos: a head on 127.0.0.2 and a worker on
# 127.0.0.3 (distinct loopback addresses: Ray rewrites 127.0.0.1 to the external interface), each
# with its own CPU/memory budget (every node on one host otherwise assumes the whole machine).
#
#   cluster/local.sh up      start both nodes; prints the address for `tfbind sweep --address`
#   cluster/local.sh down    stop both nodes (only this cluster's processes: other Ray instances of the
#                            same user, e.g. a `tfbind ... --address local` run, are left alone)
#   cluster/local.sh status  `ray status` against the head
#   cluster/local.sh worker  restart the worker node (after a node-loss drill)
#
# The dashboard (8265) binds to 127.0.0.1: whoever reaches the dashboard or client ports can submit
# jobs, i.e. run code on every node. Ray 2.60 adds token authentication (on by default), but older
# clusters, RAY_AUTH_MODE=disabled or a leaked token leave only the bind address between the
# cluster and the network.
set -euo pipefail
RAY="${RAY:-$(dirname "$0")/../.venv/bin/ray}"
command -v "$RAY" >/dev/null 2>&1 || RAY=ray
HEAD_IP="${TFBIND_HEAD_IP:-127.0.0.2}"
WORKER_IP="${TFBIND_WORKER_IP:-127.0.0.3}"
PORT="${TFBIND_RAY_PORT:-6380}"
CPUS_PER_NODE="${TFBIND_CPUS_PER_NODE:-2}"
GPUS_PER_NODE="${TFBIND_GPUS_PER_NODE:-0}"  # GPUs each node declares to Ray (a test declares one to schedule GPU shares)
MEMORY_PER_NODE="${TFBIND_MEMORY_PER_NODE:-4000000000}"
OBJECT_STORE="${TFBIND_OBJECT_STORE:-500000000}"
DASHBOARD_PORT="${TFBIND_DASHBOARD_PORT:-8265}"
HEAD_TMP="${TFBIND_RAY_TMP:-/tmp/tfbind-ray}"
SESSION_FILE="$HEAD_TMP/tfbind-cluster-$PORT.session"  # which Ray session `down` stops
export RAY_USAGE_STATS_ENABLED=0
# Token authentication on every node and driver (Ray 2.60): the token lives in ~/.ray/auth_token,
# made here on first use; drivers on this machine pick it up (tfbind sweep sets RAY_AUTH_MODE=token
# when that file exists).
export RAY_AUTH_MODE=token

start_worker() {
  "$RAY" start --address="$HEAD_IP:$PORT" --node-ip-address="$WORKER_IP" \
    --num-cpus="$CPUS_PER_NODE" --num-gpus="$GPUS_PER_NODE" --memory="$MEMORY_PER_NODE" --object-store-memory="$OBJECT_STORE" \
    --min-worker-port=30000 --max-worker-port=39999 --resources='{"worker_node": 1}' --disable-usage-stats >/dev/null
}

record_session() {
  [ -e "$HEAD_TMP/session_latest" ] && readlink -f "$HEAD_TMP/session_latest" > "$SESSION_FILE" || true
}

case "${1:-}" in
  worker)
    # (re)start the worker node, e.g. after a node-loss drill killed it
    start_worker
    echo "worker node $WORKER_IP joined $HEAD_IP:$PORT"
    ;;
  up)
    [ -s "$HOME/.ray/auth_token" ] || "$RAY" get-auth-token --generate >/dev/null
    # A start that fails half-way (a head whose dashboard died, a worker that did not join) is stopped again,
    # so that nothing keeps the ports for the next `up`.
    trap 'record_session; "$0" down >/dev/null' ERR
    "$RAY" start --head --node-ip-address="$HEAD_IP" --port="$PORT" \
      --num-cpus="$CPUS_PER_NODE" --num-gpus="$GPUS_PER_NODE" --memory="$MEMORY_PER_NODE" --object-store-memory="$OBJECT_STORE" \
      --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
      --ray-client-server-port="${TFBIND_CLIENT_PORT:-10001}" --min-worker-port=20000 --max-worker-port=29999 --temp-dir="$HEAD_TMP" --resources='{"head_node": 1}' --disable-usage-stats >/dev/null
    record_session
    start_worker
    trap - ERR
    echo "ray cluster up: --address $HEAD_IP:$PORT (dashboard http://127.0.0.1:$DASHBOARD_PORT)"
    ;;
  down)
    # Every process of this cluster has its session directory in its command line (both nodes share it)
    # or descends from one that does; `ray stop` would stop every Ray process of the user instead.
    if [ -s "$SESSION_FILE" ]; then
      session="$(cat "$SESSION_FILE")"
      # Rounds: a raylet may start a worker while the first round stops it; the next round finds that one.
      for _round in 1 2 3; do
        roots="$(pgrep -f -- "$session" || true) $(pgrep -f -- "ray.util.client.server --address=$HEAD_IP:$PORT" || true)"
        [ -z "${roots// /}" ] && break
        all=""
        for pid in $roots; do all="$all $pid $(pgrep -P "$pid" || true)"; done
        for pid in $roots; do for child in $(pgrep -P "$pid" || true); do all="$all $(pgrep -P "$child" || true)"; done; done
        kill -TERM $all 2>/dev/null || true
        for _ in $(seq 50); do
          alive=""; for pid in $all; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
          [ -z "$alive" ] && break; sleep 0.2
        done
        [ -n "${alive:-}" ] && kill -KILL $alive 2>/dev/null || true
      done
      rm -f "$SESSION_FILE"
    fi
    echo "ray cluster down"
    ;;
  status)
    "$RAY" status --address="$HEAD_IP:$PORT"
    ;;
  *)
    echo "usage: $0 up|down|status|worker" >&2
    exit 2
    ;;
esac
