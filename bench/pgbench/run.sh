#!/usr/bin/env bash
# Copied from the pgbench kit that issue 7 names. lib_*.sql beside it run the library's own
# statements; see bench/run.sh.
# Re-measure the physical limits of an outbox queue on PostgreSQL with pgbench.
#
# Recreates the outbox_bench table (schema.sql) in the target database and runs
# the scripts in this folder. Nothing in the server configuration is changed;
# the "sync commit off" enqueue variant sets synchronous_commit for the pgbench
# sessions only (PGOPTIONS).
#
# Usage:  bench/pgbench/run.sh [all|enqueue|batch|drain|drain-sustained|drain-extra|summary]...
#         ("all" = enqueue batch drain drain-sustained; "summary" only re-prints medians of $OUT)
#
# Environment (defaults in brackets):
#   PGHOST [127.0.0.1] PGPORT [5432] PGUSER [postgres] PGDATABASE [test]
#   PGBENCH         pgbench binary [pgbench on PATH, else /usr/lib/postgresql/15/bin/pgbench]
#   DURATION        seconds per timed run [15]
#   RUNS            repetitions of every configuration [3]
#   DRAIN_RUNS      repetitions of the fixed-backlog drain runs [5]
#   DRAIN_ROWS      backlog for the fixed-backlog drain (drained to empty) [200000]
#   SUSTAINED_ROWS  backlog for the timed drain (must not run dry) [2000000]
#   SUSTAINED_DURATION seconds per timed drain run [10]
#   ENQ_CLIENTS     client counts for enqueue tests ["1 2 4 8"]
#   DRAIN_CLIENTS   client counts for batch/drain tests ["1 2 4"]
#   OUT             raw results file (TSV, appended) [./pgbench-results.tsv]
#
# Output: one TSV line per run (test, clients, run, tps, latency_ms, rows_per_s,
# extra) in $OUT, then a median summary per (test, clients) on stdout.
# Rows/s = tps x rows per script execution (1 for enqueue, 100 for batch and drain,
# 1000 for drain_2tx_b1000). The outbox_bench table is dropped at the end unless
# KEEP_TABLE=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}" PGDATABASE="${PGDATABASE:-test}"
if [[ -z "${PGBENCH:-}" ]]; then
  if command -v pgbench >/dev/null 2>&1; then PGBENCH=pgbench; else PGBENCH=/usr/lib/postgresql/15/bin/pgbench; fi
fi
DURATION="${DURATION:-15}"
RUNS="${RUNS:-3}"
DRAIN_RUNS="${DRAIN_RUNS:-5}"
DRAIN_ROWS="${DRAIN_ROWS:-200000}"
SUSTAINED_ROWS="${SUSTAINED_ROWS:-2000000}"
SUSTAINED_DURATION="${SUSTAINED_DURATION:-10}"
ENQ_CLIENTS="${ENQ_CLIENTS:-1 2 4 8}"
DRAIN_CLIENTS="${DRAIN_CLIENTS:-1 2 4}"
OUT="${OUT:-$PWD/pgbench-results.tsv}"

PSQL=(psql -X -q -v ON_ERROR_STOP=1)
sql() { "${PSQL[@]}" -Atc "$1"; }

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

reset_empty() {
  sql "TRUNCATE outbox_bench" >/dev/null
  sql "VACUUM (ANALYZE) outbox_bench" >/dev/null
  sql "CHECKPOINT" >/dev/null
}

prefill() { "${PSQL[@]}" -v rows="$1" -f "$HERE/prefill.sql" >/dev/null; }

# pgb CLIENTS SCRIPT [pgbench args...]: runs pgbench, sets LAST_TPS and LAST_LAT.
pgb() {
  local clients="$1" script="$2"; shift 2
  local jobs=$(( clients < 2 ? clients : 2 ))
  local out
  out="$("$PGBENCH" -n -M prepared -c "$clients" -j "$jobs" -f "$HERE/$script" "$@" 2>&1)" || { echo "$out" >&2; return 1; }
  if grep -q "number of failed transactions: [1-9]" <<<"$out"; then echo "$out" >&2; fi
  LAST_TPS="$(grep -oP 'tps = \K[0-9.]+' <<<"$out" | head -1)"
  LAST_LAT="$(grep -oP 'latency average = \K[0-9.]+' <<<"$out" | head -1)"
}

# emit TEST CLIENTS RUN ROWS_PER_TX [EXTRA]: appends one result line for the last pgb run.
emit() {
  local rows
  rows="$(awk -v t="$LAST_TPS" -v r="$4" 'BEGIN{printf "%.0f", t*r}')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$LAST_TPS" "$LAST_LAT" "$rows" "${5:-}" | tee -a "$OUT"
}

start_listener() {
  # A LISTENing session that keeps consuming notifications (psql \watch loop).
  ( echo "LISTEN outbox_bench;"; echo "SELECT 1 \\watch 0.1" ) | "${PSQL[@]}" >/dev/null 2>&1 &
  LISTENER_PID=$!
  sleep 0.5
}
stop_listener() {
  kill "$LISTENER_PID" 2>/dev/null || true
  wait "$LISTENER_PID" 2>/dev/null || true
}

run_enqueue() {
  log "enqueue: single-row tx, +NOTIFY, +NOTIFY with a listener, sync commit off; ${DURATION}s x ${RUNS}"
  local run c
  for run in $(seq 1 "$RUNS"); do
    for c in $ENQ_CLIENTS; do
      reset_empty; pgb "$c" enqueue.sql -T "$DURATION"; emit enqueue "$c" "$run" 1
      reset_empty; pgb "$c" enqueue_notify.sql -T "$DURATION"; emit enqueue_notify "$c" "$run" 1
      reset_empty; start_listener
      pgb "$c" enqueue_notify.sql -T "$DURATION"
      emit enqueue_notify_listener "$c" "$run" 1 "queue_usage_after=$(sql "SELECT pg_notification_queue_usage()")"
      stop_listener
      reset_empty; PGOPTIONS="-c synchronous_commit=off" pgb "$c" enqueue.sql -T "$DURATION"; emit enqueue_sync_commit_off "$c" "$run" 1
    done
  done
}

run_batch() {
  log "batch enqueue: 100 rows per statement; ${DURATION}s x ${RUNS}"
  local run c
  for run in $(seq 1 "$RUNS"); do
    for c in $DRAIN_CLIENTS; do
      reset_empty; pgb "$c" enqueue_batch100.sql -T "$DURATION"; emit enqueue_batch100 "$c" "$run" 100
    done
  done
}

# drain_fixed TEST SCRIPT CLIENTS RUN ROWS_PER_BATCH: prefill DRAIN_ROWS, then drain
# them to empty with exactly DRAIN_ROWS/ROWS_PER_BATCH script executions.
drain_fixed() {
  local test="$1" script="$2" c="$3" run="$4" per_batch="$5" left
  prefill "$DRAIN_ROWS"
  pgb "$c" "$script" -t $(( DRAIN_ROWS / per_batch / c ))
  left="$(sql "SELECT count(*) FROM outbox_bench WHERE status = 'PENDING'")"
  emit "$test" "$c" "$run" "$per_batch" "backlog=${DRAIN_ROWS} pending_after=${left}"
}

# Fixed backlog: prefill DRAIN_ROWS, drain it to empty (batches of 100).
run_drain() {
  log "drain: ${DRAIN_ROWS} pending rows drained to empty; x ${DRAIN_RUNS}"
  local run c s
  for run in $(seq 1 "$DRAIN_RUNS"); do
    for c in $DRAIN_CLIENTS; do
      for s in drain_1stmt drain_tx drain_2tx; do
        drain_fixed "$s" "$s.sql" "$c" "$run" 100
      done
    done
  done
}

# Extra drain variants next to drain_2tx (paired): completion by DELETE, and 1000-row claims.
run_drain_extra() {
  log "drain-extra: 2tx vs 2tx+DELETE vs 2tx batch 1000; ${DRAIN_ROWS} rows drained to empty; x ${DRAIN_RUNS}"
  local run c
  for run in $(seq 1 "$DRAIN_RUNS"); do
    for c in $DRAIN_CLIENTS; do
      drain_fixed drain_2tx_ref drain_2tx.sql "$c" "$run" 100
      drain_fixed drain_2tx_delete drain_2tx_delete.sql "$c" "$run" 100
      drain_fixed drain_2tx_b1000 drain_2tx_b1000.sql "$c" "$run" 1000
    done
  done
}

# Timed drain over a large backlog (must not run dry: checks pending rows left).
run_drain_sustained() {
  log "drain-sustained: ${SUSTAINED_ROWS} pending rows, ${SUSTAINED_DURATION}s x ${RUNS}"
  local run c s done_rows left
  for run in $(seq 1 "$RUNS"); do
    for c in $DRAIN_CLIENTS; do
      for s in drain_1stmt drain_tx drain_2tx; do
        prefill "$SUSTAINED_ROWS"
        pgb "$c" "$s.sql" -T "$SUSTAINED_DURATION"
        read -r done_rows left < <(sql "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FILTER (WHERE status = 'PENDING') FROM outbox_bench" | tr '|' ' ')
        emit "${s}_sustained" "$c" "$run" 100 "backlog=${SUSTAINED_ROWS} completed_rows_per_s=$(awk -v d="$done_rows" -v s="$SUSTAINED_DURATION" 'BEGIN{printf "%.0f", d/s}') pending_left=${left}"
        if [[ "$left" -eq 0 ]]; then log "WARNING: backlog ran dry; raise SUSTAINED_ROWS"; fi
      done
    done
  done
}

summary() {
  # Median tps / rows per second per (test, clients); portable awk (no gawk needed).
  # rows_per_s = tps x rows per script execution, so one sort by tps serves both.
  [[ -s "$OUT" ]] || return 0
  sort -t$'\t' -k1,1 -k2,2n -k4,4g "$OUT" | awk -F'\t' '
    function flush() {
      if (m == 0) return
      if (m % 2) { mt = t[(m+1)/2]; mr = r[(m+1)/2] }
      else { mt = (t[m/2] + t[m/2+1]) / 2; mr = (r[m/2] + r[m/2+1]) / 2 }
      printf "%-28s clients=%-2s runs=%d  median_tps=%8.0f  median_rows_per_s=%8.0f\n", kt, kc, m, mt, mr
    }
    { k = $1 SUBSEP $2
      if (k != prev) { flush(); m = 0; prev = k; kt = $1; kc = $2 }
      m++; t[m] = $4 + 0; r[m] = $6 + 0 }
    END { flush() }'
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(all)

if [[ "${targets[*]}" != "summary" ]]; then
  "${PSQL[@]}" -f "$HERE/schema.sql" 2>/dev/null
  log "server: $(sql 'SELECT version()')"
  log "settings: $(sql "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','synchronous_commit','fsync','wal_level','max_wal_size','checkpoint_timeout','autovacuum')")"
  log "results -> $OUT"
fi
for t in "${targets[@]}"; do
  case "$t" in
    all) run_enqueue; run_batch; run_drain; run_drain_sustained ;;
    enqueue) run_enqueue ;;
    batch) run_batch ;;
    drain) run_drain ;;
    drain-sustained) run_drain_sustained ;;
    drain-extra) run_drain_extra ;;
    summary) ;;
    *) echo "unknown target: $t" >&2; exit 2 ;;
  esac
done
summary
if [[ "${targets[*]}" != "summary" && "${KEEP_TABLE:-0}" != 1 ]]; then
  sql "DROP TABLE IF EXISTS outbox_bench" >/dev/null
fi
