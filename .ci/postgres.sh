#!/usr/bin/env bash
# Start a throwaway PostgreSQL server (Debian's package) for the tests and export its URL as
# LEADSCORE_TEST_POSTGRES_URL. Sourced by .ci/run; returns non-zero if no server could be started.
# The server lives in a temporary directory, listens on 127.0.0.1 only (trust auth: throwaway, local)
# and is stopped and deleted when the sourcing shell exits.
pg_start() {
  local bindir port dir first
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing Debian's postgresql for the tests..."
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || return 1
    else
      echo "PostgreSQL is not installed and cannot be installed here (not root or no apt-get)"
      return 1
    fi
  fi
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  dir=$(mktemp -d /tmp/leadscore-pg.XXXXXX)
  chmod 755 "$dir"
  local runas=()
  # PostgreSQL refuses to run as root: run it as the postgres user Debian's package creates
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; runas=(runuser -u postgres --); fi
  "${runas[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; return 1; }
  first=${LEADSCORE_TEST_PG_PORT:-55432}
  # the first free port from $first on (another run or another checkout may hold the default one)
  for port in $(seq "$first" $((first + 20))); do
    if "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
        -l "$dir/log" -w -t 60 start >/dev/null 2>&1; then
      export LEADSCORE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
      LEADSCORE_TEST_PG_DIR=$dir
      LEADSCORE_TEST_PG_CTL=("${runas[@]}" "$bindir/pg_ctl")
      trap 'pg_stop' EXIT
      echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') running on 127.0.0.1:$port for the tests"
      return 0
    fi
  done
  echo "could not start PostgreSQL (ports $first-$((first + 20))):"; tail -n 20 "$dir/log"
  return 1
}
pg_stop() {
  if [ -n "${LEADSCORE_TEST_PG_DIR:-}" ]; then
    "${LEADSCORE_TEST_PG_CTL[@]}" -D "$LEADSCORE_TEST_PG_DIR/data" -m fast -w stop >/dev/null 2>&1
    rm -rf "$LEADSCORE_TEST_PG_DIR"
    unset LEADSCORE_TEST_PG_DIR
  fi
}
pg_start
