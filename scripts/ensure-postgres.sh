#!/usr/bin/env bash
# Prints an admin URL of a PostgreSQL server the tests may create databases on.
#  1. WXLOGIN_TEST_POSTGRES_URL, if set;
#  2. a server already answering on 127.0.0.1:5432 (user postgres, trust auth);
#  3. otherwise a private cluster under .wxlogin/pg, made with initdb and started with pg_ctl
#     on a free port (installing Debian's postgresql package first when we are root).
# Leftover test databases (wxlogin_test_*) from interrupted runs are dropped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

drop_leftovers() {
  local url="$1"
  command -v psql >/dev/null 2>&1 || return 0
  psql "$url" -Atc "select datname from pg_database where datname like 'wxlogin_test_%'" 2>/dev/null |
    while read -r db; do psql "$url" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true; done
}

if [ -n "${WXLOGIN_TEST_POSTGRES_URL:-}" ]; then
  echo "$WXLOGIN_TEST_POSTGRES_URL"; exit 0
fi
url="postgres://postgres@127.0.0.1:5432/postgres"
if command -v psql >/dev/null 2>&1 && psql "$url" -Atc 'select 1' >/dev/null 2>&1; then
  drop_leftovers "$url"; echo "$url"; exit 0
fi

bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL (apt-get install -y postgresql)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  else
    echo "PostgreSQL is needed for the Postgres tests. Install it with: sudo apt-get install -y postgresql" >&2
    echo "or point WXLOGIN_TEST_POSTGRES_URL at a server where we may create databases." >&2
    exit 1
  fi
fi

data="$root/.wxlogin/pg"
port_file="$data/wxlogin-port"
run_as=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_as=(runuser -u postgres --)
fi
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data"
  "${run_as[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
fi
port="$(cat "$port_file" 2>/dev/null || python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
url="postgres://postgres@127.0.0.1:$port/postgres"
if ! "${run_as[@]}" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  echo "$port" > "$port_file"
  "${run_as[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k /tmp -c max_connections=400 -c fsync=off" start >/dev/null
fi
drop_leftovers "$url"
echo "$url"
