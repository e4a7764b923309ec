#!/usr/bin/env bash
# The guide's multi-DC walkthrough on this machine: 3 BJ servers + 1 SH server on
# 127.0.0.11-14, `join`, `members`, `join -wan`, `members -wan`.
# (The main job is scripts/deploy.sh: the same topology on lab hosts through Ansible.) KEEP=1 leaves the agents running
# (stop them with: bash scripts/guide-loopback.sh stop).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${PYCONSUL_DEMO_DIR:-/tmp/pyconsul-demo}
PY=.venv/bin/python

stop() {
    for f in "$STATE"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}

if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

bash scripts/bootstrap.sh
stop
rm -rf "$STATE"; mkdir -p "$STATE"

start() {  # name ip dc
    local name=$1 ip=$2 dc=$3
    $PY -m pyconsul.agent agent -server -bootstrap-expect=3 -data-dir="$STATE/$name" -node="$name" \
        -bind="$ip" -client="$ip" -datacenter="$dc" -ui >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
    for _ in $(seq 100); do
        curl -fs "http://$ip:8500/v1/agent/self" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "agent $name did not start; its log:" >&2; cat "$STATE/$name.log" >&2; exit 1
}

pc() { local ip=$1; shift; CONSUL_HTTP_ADDR="$ip:8500" $PY -m pyconsul.agent "$@"; }

[ "${KEEP:-0}" = "1" ] || trap stop EXIT
echo "==> starting node1-3 (BJ) and node4 (SH)"
start node1 127.0.0.11 BJ
start node2 127.0.0.12 BJ
start node3 127.0.0.13 BJ
start node4 127.0.0.14 SH

echo "==> node2, node3: pyconsul join 127.0.0.11"
pc 127.0.0.12 join 127.0.0.11
pc 127.0.0.13 join 127.0.0.11
echo "==> node4: pyconsul join -wan 127.0.0.11"
pc 127.0.0.14 join -wan 127.0.0.11

wait_members() {  # ip count [-wan]
    for _ in $(seq 100); do
        n=$(pc "$1" members ${3:-} -status=alive 2>/dev/null | tail -n +2 | wc -l)
        [ "$n" -ge "$2" ] && return 0
        sleep 0.2
    done
    echo "members did not converge" >&2; return 1
}
wait_members 127.0.0.11 3
wait_members 127.0.0.14 4 -wan

echo "==> pyconsul members (on node1)"
pc 127.0.0.11 members
echo "==> pyconsul members -wan (on node4)"
pc 127.0.0.14 members -wan
echo "==> waiting for BJ to elect a Raft leader (bootstrap-expect=3; Consul timing, raft_multiplier 5)"
leader=""
for _ in $(seq 300); do
    leader=$(curl -fs http://127.0.0.11:8500/v1/status/leader 2>/dev/null | tr -d '"')
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { echo "no leader elected in BJ" >&2; exit 1; }
echo "==> BJ leader: $leader"
echo "==> pyconsul operator raft list-peers (on node1)"
pc 127.0.0.11 operator raft list-peers
echo "==> SH has one server that expects 3, as in the guide: it stays without a leader"
if [ "${KEEP:-0}" = "1" ]; then
    echo "==> agents keep running (logs in $STATE); stop them with: bash scripts/guide-loopback.sh stop"
fi
