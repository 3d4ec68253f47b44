#!/usr/bin/env bash
# make run: build and start the service on this machine.
#
# - PostgreSQL: uses DATABASE_URL if set; else the server on 127.0.0.1:5432 if
#   one answers; else, if PostgreSQL's programs are installed, a private
#   cluster under ./data/postgres on port 5433 (started here, kept between runs).
# - NATS: uses NATS_URL if set. Else serve starts its embedded NATS, on
#   NATS_LISTEN if set, else on 127.0.0.1:4222 when that is free, else on the
#   first free port from 4223: a server already on 4222 is someone else's
#   (set NATS_URL to use it). serve notes the address in data/nats.url,
#   where tenancy events tail finds it.
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

if [ -n "${NATS_URL:-}" ]; then
  echo "make run: NATS: $NATS_URL (NATS_URL)"
else
  if [ -z "${NATS_LISTEN:-}" ]; then
    port=4222
    while answers 127.0.0.1 "$port"; do port=$((port + 1)); done
    export NATS_LISTEN="127.0.0.1:$port"
    if [ "$port" != 4222 ]; then
      echo "make run: 127.0.0.1:4222 is taken (another NATS?): the embedded NATS listens on $NATS_LISTEN instead"
      echo "          (set NATS_URL=nats://127.0.0.1:4222 to publish to that server)"
    fi
  fi
  echo "make run: NATS: embedded, on $NATS_LISTEN (tenancy events tail finds it through data/nats.url)"
fi

mkdir -p bin
if [ -x bin/tenancy ]; then
  echo "make run: building bin/tenancy"
else
  echo "make run: building bin/tenancy (the first build downloads modules: about a minute)"
fi
go build -o bin/tenancy ./cmd/tenancy
echo "make run: DATABASE_URL=${DATABASE_URL%%\?*}"
exec bin/tenancy serve --log-format "${LOG_FORMAT:-text}" "$@"
