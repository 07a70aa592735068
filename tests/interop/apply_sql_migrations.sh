#!/usr/bin/env bash
# Apply the SQL migrations in migrations/<key>/NNN_<name>.sql with psql, recording the
# versions in "<PREFIX>schema_version" exactly like Python Chancy 0.26.0 does.
#
#   tests/interop/apply_sql_migrations.sh DSN PREFIX [up|down]
#
# up (default): the `-- up` section of every file, in the order chancy 1..8, metrics,
#   workflow, cron, trigger; after each file, in the same transaction, upserts
#   (key, N) into "<PREFIX>schema_version". Like Python's migrate(), steps at or below
#   the version already recorded for a key are skipped (so an older database is
#   upgraded, and a second run does nothing).
# down: the `-- down` section of every recorded step in exactly the reverse order;
#   after each file, in the same transaction, records (key, N-1) (Python's
#   migrate(to_version=0) also leaves the schema_version table, every key at 0).
#
# Each section is sent as ONE simple-query string (psql -c does not split it), in one
# transaction (-1), like the Rust migrator. Used to check the SQL files against the
# pg_dump of a database migrated by Python 0.26.0 (tests/data/python-0.26.0-schema.sql).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 DSN PREFIX [up|down]" >&2
    exit 2
fi
dsn=$1
prefix=$2
direction=${3:-up}
if [[ ! $prefix =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "invalid prefix: $prefix" >&2
    exit 2
fi
if [[ $direction != up && $direction != down ]]; then
    echo "direction must be up or down" >&2
    exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
keys=(chancy metrics workflow cron trigger)

files=()
for key in "${keys[@]}"; do
    n=0
    for f in "$root/migrations/$key"/[0-9][0-9][0-9]_*.sql; do
        n=$((n + 1))
        num=$(basename "$f" | cut -c1-3)
        if ((10#$num != n)); then
            echo "$f: expected migration number $n" >&2
            exit 1
        fi
        files+=("$f")
    done
done

# Print the `-- up` or `-- down` section of a file; fail unless the file has exactly one
# `-- up` line followed by exactly one `-- down` line.
section() {
    awk -v want="$2" -v file="$1" '
        $0 == "-- up"   { ups++; if (downs) bad = 1; cur = "up"; next }
        $0 == "-- down" { downs++; if (!ups) bad = 1; cur = "down"; next }
        cur == want     { print }
        END {
            if (bad || ups != 1 || downs != 1) {
                print file ": needs one \"-- up\" line then one \"-- down\" line" > "/dev/stderr"
                exit 1
            }
        }' "$1"
}

# {prefix} may appear only inside a double-quoted identifier or a single-quoted literal.
check_placeholders() {
    local stray
    stray=$(sed -e "s/\"[^\"]*\"//g" -e "s/'[^']*'//g" "$1" | grep -n '{prefix}' || true)
    if [[ -n $stray ]]; then
        echo "$1: {prefix} outside quotes:" >&2
        echo "$stray" >&2
        exit 1
    fi
}

version_table="\"${prefix}schema_version\""
create_version_table="CREATE TABLE IF NOT EXISTS $version_table (version_of VARCHAR(255) PRIMARY KEY, version INT)"

run() { # file direction
    local f=$1 dir=$2 key num version body current
    key=$(basename "$(dirname "$f")")
    num=$((10#$(basename "$f" | cut -c1-3)))
    if [[ $dir == up ]]; then version=$num; else version=$((num - 1)); fi
    check_placeholders "$f"
    body=$(section "$f" "$dir" | sed "s/{prefix}/$prefix/g")
    current=$(psql "$dsn" -X -q -At -v ON_ERROR_STOP=1 \
        -c "SET client_min_messages = warning" -c "$create_version_table" \
        -c "SELECT COALESCE((SELECT version FROM $version_table WHERE version_of = '$key'), 0)")
    if [[ $dir == up && $num -le $current ]] || [[ $dir == down && $num -gt $current ]]; then
        echo "skip $dir ${f#"$root"/} ($key is at $current)"
        return
    fi
    echo "$dir ${f#"$root"/} -> $key $version"
    psql "$dsn" -X -q -v ON_ERROR_STOP=1 -1 \
        -c "SET LOCAL client_min_messages = warning" \
        -c "$body" \
        -c "INSERT INTO $version_table (version_of, version) VALUES ('$key', $version)
            ON CONFLICT (version_of) DO UPDATE SET version = EXCLUDED.version"
}

if [[ $direction == up ]]; then
    for f in "${files[@]}"; do run "$f" up; done
else
    for ((i = ${#files[@]} - 1; i >= 0; i--)); do run "${files[i]}" down; done
fi
