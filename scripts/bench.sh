#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md on this machine, in release mode:
#   1. the end-to-end figures (`flowline bench`): durable turns on PostgreSQL and SQLite beside the PostgreSQL
#      single-statement ceiling, HTTP end to end at fixed rates, 100,000 timers, server memory;
#   2. the compiler and VM micro-benchmarks (ordo-one/benchmark, in Benchmarks/).
# It starts its own throw-away PostgreSQL (scripts/postgres.sh) and stops it at the end.
# Options after the script name go to `flowline bench` (e.g. --only http --rates 1000).
# Results: printed, and appended to .build/bench-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_env=$(bash scripts/postgres.sh)
eval "$pg_env"
trap 'bash scripts/postgres.sh stop "$FLOWLINE_PG_DIR"' EXIT

swift build -c release --product flowline
mkdir -p .build
.build/release/flowline bench --postgres "$FLOWLINE_TEST_POSTGRES_URL" --output .build/bench-results.md "$@"

if [ "${SKIP_MICRO:-}" != 1 ]; then
  (cd Benchmarks && swift package --disable-sandbox benchmark --no-progress --format markdown) | tee -a .build/bench-results.md
fi
