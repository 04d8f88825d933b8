#!/usr/bin/env bash
# Starts a throw-away PostgreSQL for tests and benchmarks: installs Debian's server if missing, runs initdb and
# pg_ctl on a temp dir (as the postgres user when we are root: initdb refuses root), listening on 127.0.0.1 on a
# free port. Prints `export` lines for FLOWLINE_TEST_POSTGRES_URL, FLOWLINE_PG_DIR and FLOWLINE_PG_BIN;
# `scripts/postgres.sh stop DIR` stops it.
set -euo pipefail

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ "${1:-}" = "stop" ]; then
  dir="$2"
  bin=$(bindir)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  else "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$dir"
  exit 0
fi

if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/initdb" ]; then
  echo "installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
bin=$(bindir)
dir=$(mktemp -d /tmp/flowline-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -A trust -U flowline -E UTF8 --no-locale >"$dir/initdb.log" 2>&1
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on" start >/dev/null
"${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U flowline flowline
echo "export FLOWLINE_TEST_POSTGRES_URL=postgres://flowline@127.0.0.1:$port/flowline"
echo "export FLOWLINE_PG_DIR=$dir"
echo "export FLOWLINE_PG_BIN=$bin"
