#!/usr/bin/env bash
# make run: build and start the service on this machine.
#
# - PostgreSQL: uses DATABASE_URL if set; else the server on 127.0.0.1:5432 if
#   one answers; else, if PostgreSQL's programs are installed, a private
#   cluster under ./data/postgres on port 5433 (started here, kept between runs).
# - NATS: uses NATS_URL if set; else a server on 127.0.0.1:4222 if one answers.
set -euo pipefail
cd "$(dirname "$0")/.."

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if [ -z "${DATABASE_URL:-}" ]; then
  if answers 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/tenancy?sslmode=disable"
  else
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bindir" ] && command -v initdb >/dev/null; then bindir=$(dirname "$(command -v initdb)"); fi
    if [ -z "$bindir" ]; then
      echo "make run: no PostgreSQL on 127.0.0.1:5432 and no PostgreSQL programs to start one." >&2
      echo "Install PostgreSQL (apt-get install postgresql) or set DATABASE_URL." >&2
      exit 1
    fi
    pgdata="$PWD/data/postgres"
    runas=()
    if [ "$(id -u)" = 0 ]; then runas=(runuser -u postgres --); mkdir -p data; chown postgres "$PWD/data" 2>/dev/null || true; fi
    if [ ! -s "$pgdata/PG_VERSION" ]; then
      echo "make run: creating a private PostgreSQL cluster in $pgdata"
      mkdir -p "$pgdata"; [ ${#runas[@]} -gt 0 ] && chown postgres "$pgdata"
      "${runas[@]}" "$bindir/initdb" -D "$pgdata" -U postgres -A trust >/dev/null
    fi
    if ! answers 127.0.0.1 5433; then
      echo "make run: starting it on 127.0.0.1:5433"
      "${runas[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -o "-p 5433 -k /tmp -c listen_addresses=127.0.0.1" -w start >/dev/null
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:5433/tenancy?sslmode=disable"
  fi
fi

if [ -z "${NATS_URL:-}" ] && answers 127.0.0.1 4222; then
  export NATS_URL="nats://127.0.0.1:4222"
fi

mkdir -p bin
go build -o bin/tenancy ./cmd/tenancy
echo "make run: DATABASE_URL=${DATABASE_URL%%\?*}"
exec bin/tenancy serve --log-format "${LOG_FORMAT:-text}" "$@"
