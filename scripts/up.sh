#!/usr/bin/env bash
# Runs wxlogin with its embedded defaults: SQLite in ./wxlogin.db, a private nats-server when
# none (2.10+) answers on 127.0.0.1:4222, and the WeChat simulator with a demo app.
# It prints the curl commands to try a login. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is needed: install it with  curl https://sh.rustup.rs -sSf | sh  (then reopen the shell)" >&2
  exit 1
fi
scripts/install-nats-server.sh
exec cargo run --release --locked -- up --sim "$@"
