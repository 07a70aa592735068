#!/usr/bin/env python3
"""Prints the `up` SQL of chancy's core and chancy_rs migrations for a prefix (default x_).

    python3 migrate.py x_ | psql -h /tmp/costpg -U postgres
"""
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
prefix = sys.argv[1] if len(sys.argv) > 1 else "x_"
for d in ["chancy", "chancy_rs"]:
    for f in sorted(glob.glob(os.path.join(ROOT, "migrations", d, "*.sql"))):
        up = open(f).read().split("-- up", 1)[1].split("-- down", 1)[0]
        print(up.replace("{prefix}", prefix))
