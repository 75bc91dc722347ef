#!/usr/bin/env bash
# Start a throwaway PostgreSQL server (Debian's package) for the tests and export its URL as
# LEADSCORE_TEST_POSTGRES_URL. Sourced by .ci/run; returns non-zero if no server could be started.
pg_start() {
  local bindir port dir
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || return 1
    else
      return 1
    fi
  fi
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  port=${LEADSCORE_TEST_PG_PORT:-55432}
  dir=$(mktemp -d /tmp/leadscore-pg.XXXXXX)
  chmod 755 "$dir"
  local runas=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; runas=(runuser -u postgres --); fi
  "${runas[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres >/dev/null || return 1
  "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" \
      -l "$dir/log" -w start >/dev/null || { cat "$dir/log"; return 1; }
  export LEADSCORE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL running on port $port for the tests"
}
pg_start
