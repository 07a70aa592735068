#!/bin/bash
# cpubench.sh script.sql N : CPU ms of the private cluster per transaction
PGB=/usr/lib/postgresql/15/bin/pgbench
export PGOPTIONS="-c enable_sort=off -c enable_bitmapscan=off"
a=$(./pgcpu.sh); $PGB -h /tmp/costpg -U postgres -n -t $2 -f $1 postgres >/dev/null 2>&1; b=$(./pgcpu.sh)
echo "$1: $(echo "scale=3; ($b-$a)*10/$2" | bc) ms CPU/tx"
