#!/bin/bash
# $1 binary, $2 tag: one kept drain of 50,000; heap updates of its jobs table: same-page share, HOT share
export DATABASE_URL='postgresql://postgres@%2Ftmp%2Fcostpg/postgres'
P="psql -X -q -h ${PGHOST:-/tmp/costpg} -U postgres -At"
S=$($P -c "select pg_current_wal_insert_lsn()")
$1 -q --prefix sp_$2_ bench --mode drain --jobs 50000 --concurrency 256 --keep --json > ./sp_$2.json
E=$($P -c "select pg_current_wal_insert_lsn()")
REL=$($P -c "select relfilenode from pg_class where relname='sp_$2_bench_jobs'")
/usr/lib/postgresql/15/bin/pg_waldump -p ${PGDATA:-${PGHOST:-/tmp/costpg}/data}/pg_wal -s $S -e $E 2>/dev/null | grep -E "desc: (HOT_)?UPDATE " | grep "rel [0-9]*/[0-9]*/$REL blk" > ./sp_$2.upd
upd=$(wc -l < ./sp_$2.upd); other=$(grep -c "blkref #1" ./sp_$2.upd)
echo "$2: heap updates in WAL=$upd same-page=$((upd-other)) ($(echo "scale=3; ($upd-$other)/$upd" | bc)) $($P -c "select 'n_tup_upd='||n_tup_upd||' n_tup_hot_upd='||n_tup_hot_upd||' table='||pg_size_pretty(pg_relation_size(relid)) from pg_stat_user_tables where relname='sp_$2_bench_jobs'")"
