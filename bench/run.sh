#!/usr/bin/env bash
# Runner for issue 7's benchmarks. From the repository root:
#
#   bench/run.sh                 # the documented command: go run ./cmd/outboxbench -runs 3 -json bench-results.json
#   bench/run.sh -dur 15s -drain-rows 200000 -drain-tx-rows 200000 -latency-dur 20s -heap-rows 1000000
#                                # the issue's full sizes (long: about an hour on two cores)
#   bench/run.sh pgbench [all|enqueue|batch|drain|...]
#                                # only the pure-SQL limits (bench/pgbench/run.sh, copied from
#                                # the pgbench kit issue 7 names; it documents its environment)
#   bench/run.sh lib             # pgbench on the library's own statements, in a scratch schema
#   bench/run.sh micro           # go test -bench of the hot pure functions
#
# DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
# bench/pgbench/lib_*.sql are generated from internal/store by
# `go run ./cmd/outboxbench -write-scripts bench/pgbench` (schema "outboxbench");
# outboxbench itself regenerates them for every run, so they never go stale there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
case "${1:-}" in
  pgbench)
    shift
    exec bench/pgbench/run.sh "$@" ;;
  lib)
    # Keep the schema from a short outboxbench run, then run the library's statements.
    go run ./cmd/outboxbench -runs 1 -only cost -keep >/dev/null
    go run ./cmd/outboxbench -write-scripts bench/pgbench
    PGB="${PGBENCH:-$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)}"
    PAYLOAD='{"order_id":123456789,"customer_id":"cust-123456789","currency":"EUR","items":[{"sku":"SKU-123456789","qty":2,"price_cents":1999},{"sku":"SKU-123456789","qty":1,"price_cents":4999}],"source":"checkout-service"}'
    for c in 1 2 4 8; do
      echo "lib_enqueue.sql clients=$c"
      "$PGB" -n -M prepared -c "$c" -j "$(( c < 2 ? c : 2 ))" -T "${DURATION:-15}" -f bench/pgbench/lib_enqueue.sql \
        -D topic=orders.created -D "payload=$PAYLOAD" "$DATABASE_URL" | grep -E 'tps|latency average'
    done
    psql "$DATABASE_URL" -qc 'DROP SCHEMA IF EXISTS outboxbench CASCADE; DROP SCHEMA IF EXISTS outboxbench_pg CASCADE' ;;
  micro)
    exec go test -count=1 -run XXX -bench . -benchmem . ;;
  *)
    if [[ $# -eq 0 ]]; then set -- -runs 3 -json bench-results.json; fi
    exec go run ./cmd/outboxbench "$@" ;;
esac
