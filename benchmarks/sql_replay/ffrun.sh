#!/bin/bash
# fillfactor $1: fill 100,000 pending jobs, 40 x (claim 256 + complete); WAL/job, same-page share of heap updates
P="psql -X -q -h ${PGHOST:-/tmp/costpg} -U postgres -At"
$P -c "ALTER TABLE x_jobs SET (fillfactor = $1)"
$P -f fill.sql >/dev/null
$P -c "select pg_stat_reset_single_table_counters('x_jobs'::regclass)" >/dev/null
S=$($P -c "select pg_current_wal_insert_lsn()")
for i in $(seq 1 40); do $P -f claim.sql >/dev/null; $P -f complete.sql >/dev/null; done
E=$($P -c "select pg_current_wal_insert_lsn()")
sleep 1
D=/usr/lib/postgresql/15/bin/pg_waldump
$D -p ${PGDATA:-${PGHOST:-/tmp/costpg}/data}/pg_wal -s $S -e $E 2>/dev/null > ./ff$1.dump
REL=$($P -c "select relfilenode from pg_class where relname='x_jobs'")
upd=$(grep -E "desc: (HOT_)?UPDATE " ./ff$1.dump | grep -c "rel [0-9]*/[0-9]*/$REL blk")
other=$(grep -E "desc: (HOT_)?UPDATE " ./ff$1.dump | grep "rel [0-9]*/[0-9]*/$REL blk" | grep -c "blkref #1")
echo "fillfactor=$1 WAL B/job=$($P -c "select round(pg_wal_lsn_diff('$E','$S')/10240.0)") records/job=$(echo "scale=2; $(wc -l < ./ff$1.dump)/10240" | bc) heap updates=$upd same-page=$((upd-other)) ($(echo "scale=3; ($upd-$other)/$upd" | bc)) $($P -c "select 'n_tup_upd='||n_tup_upd||' n_tup_hot_upd='||n_tup_hot_upd||' table='||pg_size_pretty(pg_relation_size('x_jobs')) from pg_stat_user_tables where relname='x_jobs'")"
