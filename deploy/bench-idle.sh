#!/usr/bin/env bash
# Benchmarks what an idle cluster writes (release build): starts 3 masters and 1,000 hollow
# nodes (`flotilla up --masters 3 --hollow-nodes 1000`) on 127.0.0.1, waits until every Node is
# Ready, lets it settle, then counts store writes (the store's revision) over an idle window,
# beside Kubernetes' writes for the same cluster (computed from its defaults, not measured).
# Prints the memory of the hollow process and the masters, then creates a Deployment of 100
# replicas on the hollow nodes, times it until all run, and measures idle writes again.
# Usage: deploy/bench-idle.sh [--nodes 1000] [--settle 30] [--window 60] [--pods 100] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=1000
SETTLE=30
WINDOW=60
PODS=100
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES=$2; shift 2 ;;
        --settle) SETTLE=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --pods) PODS=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 [--nodes N] [--settle S] [--window S] [--pods P] [--keep]" >&2; exit 2 ;;
    esac
done

cargo build --release -p flotilla --bin flotilla
BIN="$PWD/target/release/flotilla"
WORK=$(mktemp -d --tmpdir --suffix=.flotilla-bench-idle)
CLUSTER="$WORK/cluster"
UP_PID=""

cleanup() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        for _ in $(seq 1 120); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$UP_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN" up --masters 3 --hollow-nodes "$NODES" --dir "$CLUSTER" >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 240); do
    grep -qx ready "$WORK/up.log" && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; exit 1; }
    sleep 0.5
done
grep -qx ready "$WORK/up.log" || { echo "the cluster did not start" >&2; exit 1; }
export KUBECONFIG="$CLUSTER/kubeconfig"
# shellcheck disable=SC1091
. "$CLUSTER/etcd.env"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# The store's revision and the Raft log's last index (the highest among the members): every
# write bumps the revision; the log also carries what writes no revision (lease grants and
# revocations), so its growth is every entry any member had to make durable.
revision() {
    etcdctl endpoint status -w json |
        python3 -c 'import json, sys; print(max(e["Status"]["header"]["revision"] for e in json.load(sys.stdin)))'
}
raft_index() {
    etcdctl endpoint status -w json |
        python3 -c 'import json, sys; print(max(e["Status"].get("raftIndex", 0) for e in json.load(sys.stdin)))'
}
ready_nodes() {
    kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
        grep -c True || true
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Counts the writes over WINDOW seconds from the revision, and lists what was written from a
# watch of every key during the same window.
measure_idle() {
    local label=$1 seconds=$2
    local watch_log="$WORK/watch-$label.json"
    etcdctl watch --prefix / -w json >"$watch_log" 2>"$WORK/watch-$label.err" &
    local watch_pid=$!
    sleep 1
    local first last first_index last_index
    first=$(revision)
    first_index=$(raft_index)
    sleep "$seconds"
    last=$(revision)
    last_index=$(raft_index)
    kill "$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
    local writes=$((last - first))
    local rate
    rate=$(awk -v w="$writes" -v s="$seconds" 'BEGIN { printf "%.3f", w / s }')
    echo "$label: $writes store writes in ${seconds}s = $rate writes/s (revision $first -> $last)"
    echo "$label: $((last_index - first_index)) Raft log entries in ${seconds}s (index $first_index -> $last_index)"
    python3 - "$watch_log" <<'EOF'
import base64, collections, json, sys
keys = collections.Counter()
decoder = json.JSONDecoder()
text = open(sys.argv[1]).read()
position = 0
while True:
    while position < len(text) and text[position].isspace():
        position += 1
    if position >= len(text):
        break
    try:
        response, position = decoder.raw_decode(text, position)
    except ValueError:
        break
    for event in response.get("Events") or []:
        keys[base64.b64decode(event["kv"]["key"]).decode(errors="replace")] += 1
# Writes by the objects' parent (resource and namespace), naming the object when only one was
# written.
groups = collections.defaultdict(collections.Counter)
for key, count in keys.items():
    groups[key.rsplit("/", 1)[0]][key] += count
rows = sorted(groups.items(), key=lambda group: -sum(group[1].values()))
for parent, written in rows[:10]:
    label = next(iter(written)) if len(written) == 1 else f"{parent}/ ({len(written)} objects)"
    print(f"  {sum(written.values()):6d}  {label}")
node_path = sum(count for key, count in keys.items()
                if "/minions/" in key or "/nodes/" in key or "kube-node-lease" in key)
print(f"  of which Nodes and node Leases (the agents' heartbeat path): {node_path}")
EOF
    LAST_RATE=$rate
}

START=$(now)
echo "--- waiting for $NODES hollow nodes to be Ready"
# Listing a thousand Nodes costs kubectl a second of CPU: poll gently.
for _ in $(seq 1 240); do
    [ "$(ready_nodes)" -ge "$NODES" ] && break
    sleep 5
done
READY=$(ready_nodes)
[ "$READY" -ge "$NODES" ] || { echo "only $READY of $NODES nodes Ready" >&2; exit 1; }
echo "all $NODES nodes Ready $(elapsed "$START" "$(now)") s after the masters were"

echo "--- settling for ${SETTLE}s, then measuring ${WINDOW}s of idle"
sleep "$SETTLE"
measure_idle idle "$WINDOW"
IDLE_RATE=$LAST_RATE

echo "--- memory"
HOLLOW_PID=$(cat "$CLUSTER/hollow/pid")
HOLLOW_KIB=$(rss_kib "$HOLLOW_PID")
echo "hollow process: $((HOLLOW_KIB / 1024)) MiB RSS for $NODES nodes = $((HOLLOW_KIB / NODES)) KiB per node"
for member in "$CLUSTER"/master-*; do
    echo "$(basename "$member"): $(($(rss_kib "$(cat "$member/pid")") / 1024)) MiB RSS"
done

echo "--- a Deployment of $PODS replicas on the hollow nodes"
CREATED=$(now)
kubectl create deployment idle-check --image=flotilla.local/busybox:1 --replicas="$PODS" -- sleep 3600 >/dev/null
for _ in $(seq 1 600); do
    running=$(kubectl get pods -l app=idle-check --field-selector=status.phase=Running -o name 2>/dev/null | wc -l)
    ready=$(kubectl get deployment idle-check -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)
    [ "$running" -ge "$PODS" ] && [ "${ready:-0}" -ge "$PODS" ] && break
    sleep 0.5
done
echo "$running of $PODS pods Running, ${ready:-0} ready, $(elapsed "$CREATED" "$(now)") s after the create"
[ "$running" -ge "$PODS" ] || exit 1
sleep 10
measure_idle idle-with-pods "$((WINDOW / 2))"
PODS_RATE=$LAST_RATE

# Kubernetes 1.33 defaults for the same cluster, computed (not measured):
# - every kubelet renews its Lease in kube-node-lease every 10 s (renewInterval = 1/4 of 40 s);
# - every kubelet writes its node status at least every 5 min (nodeStatusReportFrequency);
# - kube-controller-manager and kube-scheduler leaders renew their Leases every 2 s
#   (retryPeriod);
# - every kube-apiserver renews its identity Lease every 10 s.
REFERENCE=$(awk -v n="$NODES" 'BEGIN { printf "%.1f", n / 10 + n / 300 + 2 / 2 + 3 / 10 }')
echo
echo "=== idle store writes with $NODES nodes (3 masters)"
echo "flotilla (measured):    $IDLE_RATE writes/s idle, $PODS_RATE writes/s idle with $PODS pods running"
echo "kubernetes (computed):  $REFERENCE writes/s = $NODES node leases / 10 s + $NODES node statuses / 300 s + 2 leader leases / 2 s + 3 API server leases / 10 s"
awk -v f="$IDLE_RATE" -v k="$REFERENCE" -v w="$WINDOW" 'BEGIN {
    if (f > 0) printf "ratio:                  kubernetes writes %.0fx more\n", k / f
    else printf "ratio:                  kubernetes writes > %.0fx more (no write in %d s)\n", k * w, w
}'
awk -v f="$IDLE_RATE" 'BEGIN { if (f <= 1) print "target ≤ 1 write/s: met"; else print "target ≤ 1 write/s: MISSED" }'
echo "memory: hollow $((HOLLOW_KIB / 1024)) MiB ($((HOLLOW_KIB / NODES)) KiB/node)"
