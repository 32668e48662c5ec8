#!/usr/bin/env bash
# A local fleet: one ingress, N exchange workers, one upserter, as separate processes.
# Usage: workers/run-fleet.sh [N]   (settings from WXLOGIN_* variables; Ctrl-C stops all)
set -euo pipefail
n="${1:-2}"
cd "$(dirname "$0")/.."
cargo build --release --locked
bin=target/release/wxlogin
mkdir -p .wxlogin/fleet
"$bin" migrate
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
"$bin" ingress > .wxlogin/fleet/ingress.log 2>&1 & pids+=($!)
for i in $(seq 1 "$n"); do
  "$bin" worker > ".wxlogin/fleet/worker-$i.log" 2>&1 & pids+=($!)
done
"$bin" upserter > .wxlogin/fleet/upserter.log 2>&1 & pids+=($!)
echo "fleet up: ingress, $n workers, upserter (logs in .wxlogin/fleet/)"
wait
