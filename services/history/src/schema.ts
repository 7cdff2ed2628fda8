// The ClickHouse tables history owns, created idempotently at start. SQL here must run on
// ClickHouse 18.16 and current releases alike: epoch ms in UInt64 (no DateTime64), no TTL
// (retention drops month partitions instead), no LowCardinality, no server-side parameters.
import type { createClickHouse } from "@stepline/internal/clickhouse";
import { sqlIdent, sqlInt, sqlString } from "@stepline/internal/clickhouse";

export type ClickHouse = ReturnType<typeof createClickHouse>;

/** Month partition of an epoch-ms column, e.g. 202405. */
const month = (column: string) => `toYYYYMM(toDateTime(intDiv(${column}, 1000)))`;

/** Every table history writes, each partitioned by month so retention can drop whole months. */
export const TABLES = ["runs", "event_runs", "steps", "skips", "events"] as const;
export type TableName = (typeof TABLES)[number];

/** Rows ClickHouse refused (one by one, as the consumer found them), kept for an operator to read. */
export const DEAD_LETTERS = "dead_letters";

function createStatements(db: string): string[] {
  return [
    `CREATE DATABASE IF NOT EXISTS ${db}`,
    // One row per RunRecord snapshot; the greatest version is current (merges keep only it, reads
    // pick it). Versions of a run share started_at_ms, hence a partition, so merges can collapse them.
    `CREATE TABLE IF NOT EXISTS ${db}.runs (
      run_id String,
      account_id String,
      environment_id String,
      function_id String,
      event_id String,
      status UInt8,
      started_at_ms UInt64,
      ended_at_ms UInt64,
      output_json String,
      error_json String,
      version UInt64
    ) ENGINE = ReplacingMergeTree(version)
    PARTITION BY ${month("started_at_ms")}
    ORDER BY (environment_id, run_id)`,
    // Runs by triggering event: a narrow index table ordered for that lookup, so listing an event's
    // runs reads a few granules instead of scanning every run of the environment.
    `CREATE TABLE IF NOT EXISTS ${db}.event_runs (
      environment_id String,
      event_id String,
      run_id String,
      started_at_ms UInt64
    ) ENGINE = ReplacingMergeTree()
    PARTITION BY ${month("started_at_ms")}
    ORDER BY (environment_id, event_id, run_id)`,
    // One row per step outcome (step, attempt, status). Redelivered records share that key and
    // collapse on merge; until then readers take one row per key (LIMIT 1 BY).
    `CREATE TABLE IF NOT EXISTS ${db}.steps (
      run_id String,
      account_id String,
      environment_id String,
      step_id String,
      name String,
      status UInt8,
      attempt Int32,
      at_ms UInt64,
      output_json String,
      error_json String,
      started_at_ms UInt64
    ) ENGINE = ReplacingMergeTree(at_ms)
    PARTITION BY ${month("at_ms")}
    ORDER BY (environment_id, run_id, step_id, attempt, status)`,
    // Every event the environment received (the events topic), for listing and reading them.
    // Ordered by time for the newest-first list; a redelivered record collapses on merge.
    `CREATE TABLE IF NOT EXISTS ${db}.events (
      account_id String,
      environment_id String,
      event_id String,
      name String,
      received_at_ms UInt64,
      event_json String
    ) ENGINE = ReplacingMergeTree()
    PARTITION BY ${month("received_at_ms")}
    ORDER BY (environment_id, received_at_ms, event_id)`,
    // Events that matched a function but started no run of it, and why (rate limit, idempotency,
    // singleton). One row per (event, function); a redelivered record collapses on merge.
    `CREATE TABLE IF NOT EXISTS ${db}.skips (
      account_id String,
      environment_id String,
      event_id String,
      function_id String,
      reason UInt8,
      at_ms UInt64,
      detail String
    ) ENGINE = ReplacingMergeTree(at_ms)
    PARTITION BY ${month("at_ms")}
    ORDER BY (environment_id, event_id, function_id)`,
    // A row of another table that ClickHouse refused, as JSON, with the error; never read by the
    // service (an operator's table), partitioned by month like the rest.
    `CREATE TABLE IF NOT EXISTS ${db}.${DEAD_LETTERS} (
      at_ms UInt64,
      table_name String,
      row_json String,
      error String
    ) ENGINE = MergeTree()
    PARTITION BY ${month("at_ms")}
    ORDER BY (table_name, at_ms)`,
  ];
}

/** Columns added after a table's first release: [table, column, type]. */
const ADDED_COLUMNS: Array<[TableName, string, string]> = [["steps", "started_at_ms", "UInt64"]];

/** ClickHouse's DUPLICATE_COLUMN: another replica added the column first. */
const DUPLICATE_COLUMN = "15";

/** Creates the database and tables if missing; safe to run any number of times, from any replica. */
export async function ensureSchema(ch: ClickHouse, database: string): Promise<void> {
  const db = sqlIdent(database);
  for (const query of createStatements(db)) await ch.command({ query });
  // 18.16 has no ADD COLUMN IF NOT EXISTS: look first, and accept losing a race to another replica.
  for (const [table, column, type] of ADDED_COLUMNS) {
    const rs = await ch.query({
      query: `SELECT count() AS n FROM system.columns
        WHERE database = ${sqlString(db)} AND table = ${sqlString(table)} AND name = ${sqlString(column)}`,
      format: "JSONEachRow",
    });
    const [row] = await rs.json<{ n: string | number }>();
    if (Number(row?.n) > 0) continue;
    try {
      await ch.command({
        query: `ALTER TABLE ${db}.${sqlIdent(table)} ADD COLUMN ${sqlIdent(column)} ${type}`,
      });
    } catch (err) {
      if ((err as { code?: unknown }).code !== DUPLICATE_COLUMN) throw err;
    }
  }
}

/**
 * Retention seam (not scheduled yet): drops every partition of history's tables older than
 * `beforeMonth` (YYYYMM). Returns the dropped partitions as `table:month`.
 */
export async function dropPartitionsBefore(
  ch: ClickHouse,
  database: string,
  beforeMonth: number,
): Promise<string[]> {
  const db = sqlIdent(database);
  const tables = [...TABLES, DEAD_LETTERS].map((t) => `'${t}'`).join(", ");
  const rs = await ch.query({
    query: `SELECT DISTINCT table, partition FROM system.parts
      WHERE database = ${sqlString(db)} AND table IN (${tables}) AND active AND toUInt32(partition) < ${sqlInt(beforeMonth)}`,
    format: "JSONEachRow",
  });
  const parts = await rs.json<{ table: string; partition: string }>();
  for (const p of parts) {
    await ch.command({
      query: `ALTER TABLE ${db}.${sqlIdent(p.table)} DROP PARTITION ${sqlInt(Number(p.partition))}`,
    });
  }
  return parts.map((p) => `${p.table}:${p.partition}`);
}
