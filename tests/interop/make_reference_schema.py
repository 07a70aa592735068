"""Migrate an empty database with Python Chancy 0.26.0 (default plugins + Cron + Trigger).

Used to (re)generate tests/data/python-0.26.0-schema.sql and
tests/data/python-0.26.0-schema-versions.txt. From the repository root:

    python3 -m venv .venv && .venv/bin/pip install "chancy[cron]==0.26.0"
    createdb -h 127.0.0.1 -U postgres ref026
    .venv/bin/python tests/interop/make_reference_schema.py \
        postgresql://postgres@127.0.0.1:5432/ref026 [PREFIX]
    pg_dump --schema-only --no-owner --no-privileges -h 127.0.0.1 -U postgres ref026 \
        | grep -v -e '^\\restrict' -e '^\\unrestrict' > tests/data/python-0.26.0-schema.sql
    psql -h 127.0.0.1 -U postgres -d ref026 -At -F ' ' \
        -c 'SELECT version_of, version FROM chancy_schema_version ORDER BY 1' \
        > tests/data/python-0.26.0-schema-versions.txt
    dropdb -h 127.0.0.1 -U postgres ref026

PREFIX defaults to "chancy_" (running it again with "other_" into the same
database checks that two prefixes can share a schema).
"""

import asyncio
import sys

from chancy import Chancy
from chancy.plugins.cron import Cron
from chancy.plugins.trigger import Trigger


async def main(dsn: str, prefix: str) -> None:
    chancy = Chancy(dsn, prefix=prefix, plugins=[Cron(), Trigger()])
    async with chancy:
        await chancy.migrate()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "chancy_"))
