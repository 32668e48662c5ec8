#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the pinned nats-server, finds or starts a
# PostgreSQL, checks formatting and lints, then runs every test. Tests start their own
# nats-servers, simulators and databases; nothing needs to be started by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is needed: install it with  curl https://sh.rustup.rs -sSf | sh  (then reopen the shell)" >&2
  exit 1
fi
scripts/install-nats-server.sh
WXLOGIN_TEST_POSTGRES_URL="$(scripts/ensure-postgres.sh)"
export WXLOGIN_TEST_POSTGRES_URL
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
