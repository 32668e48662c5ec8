#!/usr/bin/env bash
# A chaos run on a fresh seed (or the one given): a real fleet under load while seeded faults hit
# it, then every invariant checked (docs/chaos.md). On a violation it prints the seed and this
# command to run it again.
#
#   scripts/chaos.sh [--seed N] [--duration 10m|90s] [--nats 1|3] [--db sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
seed="" duration="10m" nats="1" db="sqlite"
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --nats) nats="$2"; shift 2 ;;
    --db) db="$2"; shift 2 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$nats" in 1|3) ;; *) echo "--nats is 1 or 3" >&2; exit 2 ;; esac
case "$db" in sqlite|postgres) ;; *) echo "--db is sqlite or postgres" >&2; exit 2 ;; esac
if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is needed: install it with  curl https://sh.rustup.rs -sSf | sh  (then reopen the shell)" >&2
  exit 1
fi
scripts/install-nats-server.sh
if [ "$db" = postgres ]; then
  WXLOGIN_TEST_POSTGRES_URL="$(scripts/ensure-postgres.sh)"
  export WXLOGIN_TEST_POSTGRES_URL
fi
export WXLOGIN_CHAOS_SEED="$seed" WXLOGIN_CHAOS_DURATION="$duration" WXLOGIN_CHAOS_NATS="$nats" WXLOGIN_CHAOS_DB="$db"
exec cargo test --locked --test it -- --ignored --exact --nocapture \
  chaos::a_long_run_on_a_fresh_seed_breaks_no_guarantee
