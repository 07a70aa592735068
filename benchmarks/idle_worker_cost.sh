#!/bin/bash
# Idle-worker database cost: transactions and statements committed in a private database
# during 60 s with one idle `chancy worker start`, new defaults vs upstream-like intervals.
set -e
BIN=${CHANCY_BIN:-target/debug/chancy}
PSQL="psql ${PSQL_ARGS:--h 127.0.0.1 -U postgres} -At"
run() {
  local label=$1; shift
  $PSQL -c "DROP DATABASE IF EXISTS h1_cost" >/dev/null
  $PSQL -c "CREATE DATABASE h1_cost" >/dev/null
  URL=${COST_DB_URL:-postgresql://postgres@127.0.0.1:5432}/h1_cost
  $BIN --database-url $URL migrate >/dev/null 2>&1
  $BIN --database-url $URL -q worker start --worker-id cost "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 10
  local a=$($PSQL -c "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname='h1_cost'" | tail -1)
  local ta=$($PSQL -d h1_cost -c "SELECT coalesce(sum(seq_scan+coalesce(idx_scan,0)),0) FROM pg_stat_user_tables" )
  sleep 60
  local b=$($PSQL -c "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname='h1_cost'" | tail -1)
  local tb=$($PSQL -d h1_cost -c "SELECT coalesce(sum(seq_scan+coalesce(idx_scan,0)),0) FROM pg_stat_user_tables" )
  kill -TERM $pid; wait $pid || true
  echo "$label: $(( b - a )) commits in 60 s ($(echo "scale=2; ($b-$a)/60" | bc) /s), table scans $(( tb - ta ))"
}
run "new defaults" 
run "upstream-like intervals" --heartbeat-poll-interval 30 --heartbeat-timeout 90 --leadership-poll-interval 10 --leadership-timeout 30 --recovery-poll-interval 60
$PSQL -c "DROP DATABASE IF EXISTS h1_cost" >/dev/null
