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
# The mini program helper's tests (clients/miniprogram) need node 20+; say so before the long part.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed for clients/miniprogram's tests. On Debian/Ubuntu install it with:" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo "
  echo "  curl -fsSL https://deb.nodesource.com/setup_20.x | ${sudo}bash - && ${sudo}apt-get install -y nodejs" >&2
  echo "(elsewhere: https://nodejs.org/en/download)" >&2
  exit 1
fi
scripts/install-nats-server.sh
# The live status page is tested in a real headless browser: Debian's chromium.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the status page test (apt-get install -y chromium)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 ||
    echo "warning: chromium could not be installed; tests/it/status_page.rs will say SKIPPED" >&2
fi
WXLOGIN_TEST_POSTGRES_URL="$(scripts/ensure-postgres.sh)"
export WXLOGIN_TEST_POSTGRES_URL
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
# The mini program helper against a real wxlogin and simulator (the tests start them; the
# binary was built by the cargo steps above). A file glob: `node --test <dir>` breaks on node 22+.
node --test clients/miniprogram/test/*.test.js
