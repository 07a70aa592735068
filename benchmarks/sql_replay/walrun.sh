#!/bin/bash
P="psql -h /tmp/costpg -U postgres -Atq"
S=$($P -c "select pg_current_wal_insert_lsn()")
for i in $(seq 1 $1); do $P -f claim.sql >/dev/null; $P -f ${2:-complete.sql}; done
E=$($P -c "select pg_current_wal_insert_lsn()")
echo "WAL bytes/job: $($P -c "select round(pg_wal_lsn_diff('$E','$S')/($1*256.0))")"
/usr/lib/postgresql/15/bin/pg_waldump -p /tmp/costpg/data/pg_wal -s $S -e $E --stats=record 2>&1 | sed 's/[()%]//g' | awk -v n=$(( $1 * 256 )) 'NR>3 && $2+0>0 {printf "%-22s n/job=%.2f rec B/job=%.0f fpi B/job=%.0f\n", $1, $2/n, $4/n, $6/n}'
