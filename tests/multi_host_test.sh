#!/usr/bin/env bash
# Multi-host test: the replay shards, the learner and the actors each in their own network
# namespace ("host") with its own address, joined by veth pairs on a bridge, as separate
# machines on one network would be. A short CartPole experiment is submitted with the engram
# tool and must finish, trained by actors that reach replay and the learner only over the
# bridge. Everything the test creates (namespaces, links, processes) is removed on exit.
#
#   tests/multi_host_test.sh BIN_DIR SOURCE_DIR
#
# Exit codes: 0 passed, 1 failed, 77 skipped (no root, or network namespaces not allowed).
set -euo pipefail

bin_dir=${1:?usage: multi_host_test.sh BIN_DIR SOURCE_DIR}
source_dir=${2:?usage: multi_host_test.sh BIN_DIR SOURCE_DIR}
tag="eg$$"                    # unique per run: names below stay under 15 characters
net="10.213.$(( $$ % 200 )).0"  # a /24 of our own
prefix=${net%.0}
bridge="${tag}br"
hosts=(replay learner actors)
declare -A address=([replay]="$prefix.2" [learner]="$prefix.3" [actors]="$prefix.4")
work=$(mktemp -d /tmp/engram-multihost.XXXXXX)
pids=()
names=()

skip() { echo "SKIP: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  for log in "$work"/*.log; do echo "--- $log"; tail -n 15 "$log"; done
  exit 1
}

# Stops the processes in reverse start order (actors flush to replay first, the learner
# checkpoints, then the shards); prints "name:exit code" for each.
stop_all() {
  local i pid code
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    pid=${pids[$i]}
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    code=0
    wait "$pid" 2>/dev/null || code=$?
    echo "${names[$i]}:$code"
    pids[$i]=""
  done
}

cleanup() {
  set +e
  stop_all >/dev/null 2>&1
  for host in "${hosts[@]}"; do ip netns del "${tag}-$host" 2>/dev/null; done
  ip link del "$bridge" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "no ip command (iproute2)"
ip netns add "${tag}-probe" 2>/dev/null || skip "this machine does not allow network namespaces"
ip netns del "${tag}-probe"
ip link add "$bridge" type bridge 2>/dev/null || skip "this machine does not allow bridges"
ip addr add "$prefix.1/24" dev "$bridge"
ip link set "$bridge" up

# One namespace per host, each with a veth pair to the bridge.
for host in "${hosts[@]}"; do
  ns="${tag}-$host"
  ip netns add "$ns"
  ip link add "${tag}${host:0:3}0" type veth peer name "${tag}${host:0:3}1"
  ip link set "${tag}${host:0:3}1" netns "$ns"
  ip link set "${tag}${host:0:3}0" master "$bridge" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "${address[$host]}/24" dev "${tag}${host:0:3}1"
  ip -n "$ns" link set "${tag}${host:0:3}1" up
done

start() {  # start HOST NAME ARGS...: a process on a host, logging to $work/NAME.log
  local host=$1 name=$2
  shift 2
  ip netns exec "${tag}-$host" "$@" > "$work/$name.out" 2> "$work/$name.log" &
  pids+=($!)
  names+=("$name")
}

wait_for() {  # wait_for FILE TEXT SECONDS
  for _ in $(seq 1 $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

replay="${address[replay]}:7700,${address[replay]}:7701"
learner="${address[learner]}:7800"
start replay replay-0 "$bin_dir/engram_replay_server" --address="${address[replay]}:7700" \
  --shard_index=0 --metrics_port=-1
start replay replay-1 "$bin_dir/engram_replay_server" --address="${address[replay]}:7701" \
  --shard_index=1 --metrics_port=-1
wait_for "$work/replay-0.out" "listening on" 30 || fail "replay shard 0 did not start"
wait_for "$work/replay-1.out" "listening on" 30 || fail "replay shard 1 did not start"
start learner learner "$bin_dir/engram_learner" --address="$learner" --replay_addresses="$replay" \
  --runs_dir="$work/runs" --metrics_port=-1 --log_interval=5s
wait_for "$work/learner.out" "listening on" 60 || fail "the learner did not start"
for i in 0 1; do
  start actors "actor-$i" "$bin_dir/engram_actor" --learner_address="$learner" \
    --replay_addresses="$replay" --name="actor-$i" --metrics_port=-1
done
start actors eval "$bin_dir/engram_actor" --learner_address="$learner" --role=evaluation \
  --name=eval --metrics_port=-1

# A short CartPole run, submitted from the actors' host.
spec="$work/cartpole.textproto"
sed '/^budget {/,/^}/d' "$source_dir/deploy/experiments/cartpole_apex.textproto" > "$spec"
echo 'budget { total_frames: 30000 }' >> "$spec"
if ! ip netns exec "${tag}-actors" "$bin_dir/engram" submit "$spec" --id=multi-host \
     --server="$learner" --watch --interval=2s > "$work/submit.log" 2>&1; then
  fail "the experiment did not succeed across hosts"
fi
cat "$work/submit.log"
grep -q "state            SUCCEEDED" "$work/submit.log" || fail "no SUCCEEDED in the watch output"
frames=$(grep -E "^  frames " "$work/submit.log" | awk '{print $2}')
[ "${frames:-0}" -ge 30000 ] || fail "only ${frames:-0} frames reached the learner"
for shard in 0 1; do
  cat "$work"/actor-*.log | grep -q "replay shard $shard (${address[replay]}:770$shard)" ||
    fail "no actor wrote to shard $shard on the replay host"
done
[ -s "$work/runs/multi-host/evaluations.csv" ] || fail "no evaluations.csv"
stop_all > "$work/exit_codes"
codes=$(tr '\n' ' ' < "$work/exit_codes")
echo "exit codes on SIGTERM: $codes"
for entry in $codes; do [ "${entry##*:}" = 0 ] || fail "${entry%%:*} exited with ${entry##*:}"; done
echo "PASS: $frames frames over the bridge (replay ${address[replay]}, learner" \
  "${address[learner]}, actors ${address[actors]})"
