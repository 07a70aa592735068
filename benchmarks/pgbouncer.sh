#!/bin/bash
# Usage (as root, with Debian's pgbouncer installed): BIN=target/release/chancy benchmarks/pgbouncer.sh
# Results: /tmp/pgbb/runs.jsonl (one JSON line per run) and a summary line per run on stdout.
# Direct vs PgBouncer (transaction, session) drain, interleaved rounds, release build.
BIN=${BIN:-/work/wt/review/target/release/chancy}
mk() { # mode port pool
  mkdir -p /tmp/pgbb/$1; echo '"postgres" ""' > /tmp/pgbb/$1/users.txt
  cat > /tmp/pgbb/$1/pgb.ini <<INI
[databases]
postgres = host=127.0.0.1 port=5432 dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = trust
auth_file = /tmp/pgbb/$1/users.txt
pool_mode = $1
default_pool_size = $3
max_db_connections = $3
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
pidfile = /tmp/pgbb/$1/pgb.pid
INI
  chown -R postgres /tmp/pgbb/$1
  pgbouncer -u postgres /tmp/pgbb/$1/pgb.ini > /tmp/pgbb/$1/log 2>&1 &
}
mk transaction 6531 10
mk session 6532 12
sleep 1
for round in 1 2 3; do
  for cfg in direct transaction session; do
    case $cfg in
      direct) URL=postgresql://postgres@127.0.0.1:5432/postgres; FLAG=;;
      transaction) URL=postgresql://postgres@127.0.0.1:6531/postgres; FLAG=--transaction-pooling;;
      session) URL=postgresql://postgres@127.0.0.1:6532/postgres; FLAG=;;
    esac
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    out=$(DATABASE_URL=$URL $BIN $FLAG --prefix pgbb_ bench --mode drain --jobs 20000 --json 2>/tmp/pgbb/err.log | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))')
    echo "{\"round\":$round,\"cfg\":\"$cfg\",\"load\":\"$load\",\"date\":\"$(date -u +%FT%TZ)\",\"result\":$out}" >> /tmp/pgbb/runs.jsonl
    echo "$round $cfg load=$load $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k:v for k,v in d.get("drain",{}).items() if k in ("jobs_per_second","seconds","ran_once","succeeded")})' 2>&1 | head -2)"
  done
done
kill $(cat /tmp/pgbb/transaction/pgb.pid) $(cat /tmp/pgbb/session/pgb.pid)
