// Reads and writes of history's ClickHouse tables. Writes are whole batches (one insert per
// table); reads pick the newest version of each run with ORDER BY version DESC + LIMIT 1 BY, which
// is correct before merges, across partitions and on every ClickHouse version (FINAL is not needed).
import { sqlIdent, sqlInt, sqlString } from "@stepline/internal/clickhouse";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { RunStatus, SkipReason, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Rows } from "./rows.js";
import { isEventId, isId } from "./rows.js";
import type { ClickHouse, TableName } from "./schema.js";
import { DEAD_LETTERS } from "./schema.js";

/** A run as history last saw it. */
export interface RunView {
  runId: string;
  accountId: string;
  environmentId: string;
  functionId: string;
  eventId: string;
  status: RunStatus;
  startedAtMs: number;
  /** 0 while the run has not ended. */
  endedAtMs: number;
  outputJson: string;
  errorJson: string;
  version: number;
}

/** One outcome of one attempt of a step. */
/** A function an event matched but started no run of. */
export interface SkipView {
  functionId: string;
  reason: SkipReason;
  atMs: number;
  detail: string;
}

export interface StepView {
  stepId: string;
  name: string;
  status: StepStatus;
  attempt: number;
  atMs: number;
  outputJson: string;
  errorJson: string;
}

/** An event fans out to at most one run per function; this bounds a pathological answer. */
export const MAX_EVENT_RUNS = 1000;

const RUN_COLUMNS =
  "run_id, account_id, environment_id, function_id, event_id, status, started_at_ms, ended_at_ms, output_json, error_json, version";

// JSON formats return UInt64 as strings (output_format_json_quote_64bit_integers), hence the unions.
interface RunResultRow {
  run_id: string;
  account_id: string;
  environment_id: string;
  function_id: string;
  event_id: string;
  status: number;
  started_at_ms: string | number;
  ended_at_ms: string | number;
  output_json: string;
  error_json: string;
  version: string | number;
}

interface StepResultRow {
  step_id: string;
  name: string;
  status: number;
  attempt: number;
  at_ms: string | number;
  output_json: string;
  error_json: string;
}

function runView(r: RunResultRow): RunView {
  return {
    runId: r.run_id,
    accountId: r.account_id,
    environmentId: r.environment_id,
    functionId: r.function_id,
    eventId: r.event_id,
    status: r.status as RunStatus,
    startedAtMs: Number(r.started_at_ms),
    endedAtMs: Number(r.ended_at_ms),
    outputJson: r.output_json,
    errorJson: r.error_json,
    version: Number(r.version),
  };
}

function checkId(field: string, value: string): string {
  if (!isId(value)) throw new ValidationError(`${field} is missing or malformed`);
  return value;
}

/** A ClickHouse answer with a numeric error code is the server refusing our SQL: a bug, not an outage. */
function isServerError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^\d+$/.test(code);
}

export class HistoryStore {
  private readonly db: string;

  constructor(
    private readonly ch: ClickHouse,
    database: string,
  ) {
    this.db = sqlIdent(database);
  }

  /** Keeps a row ClickHouse refused, with why, in the dead-letter table. */
  async insertDeadLetter(row: { at_ms: number; table_name: TableName; row_json: string; error: string }) {
    await this.ch.insert({ table: `${this.db}.${DEAD_LETTERS}`, values: [row], format: "JSONEachRow" });
  }

  /** Inserts one table's rows in one request (JSONEachRow). Redelivered rows are harmless. */
  async insert<T extends TableName>(table: T, rows: Rows[T]): Promise<void> {
    if (rows.length === 0) return;
    await this.ch.insert<Rows[T][number]>({
      table: `${this.db}.${sqlIdent(table)}`,
      values: rows,
      format: "JSONEachRow",
    });
  }

  /** The newest version of a run of this environment, or null (a run of another environment is null). */
  async getRun(environmentId: string, runId: string): Promise<RunView | null> {
    const rows = await this.select<RunResultRow>(
      `SELECT ${RUN_COLUMNS} FROM ${this.db}.runs
       WHERE environment_id = ${sqlString(checkId("environment_id", environmentId))}
         AND run_id = ${sqlString(checkId("run_id", runId))}
       ORDER BY version DESC LIMIT 1`,
    );
    return rows[0] ? runView(rows[0]) : null;
  }

  /** The runs an event started in this environment, newest version of each, oldest run first. */
  async listEventRuns(environmentId: string, eventId: string): Promise<RunView[]> {
    const env = sqlString(checkId("environment_id", environmentId));
    if (!isEventId(eventId)) throw new ValidationError("event_id is missing or too long");
    const rows = await this.select<RunResultRow>(
      `SELECT ${RUN_COLUMNS} FROM (
         SELECT ${RUN_COLUMNS} FROM ${this.db}.runs
         WHERE environment_id = ${env}
           AND run_id IN (SELECT run_id FROM ${this.db}.event_runs
                          WHERE environment_id = ${env} AND event_id = ${sqlString(eventId)})
         ORDER BY run_id, version DESC LIMIT 1 BY run_id
       ) ORDER BY started_at_ms, run_id LIMIT ${sqlInt(MAX_EVENT_RUNS)}`,
    );
    return rows.map(runView);
  }

  /** A run's step outcomes, oldest first, one row per (step, attempt, status) even before merges. */
  async listSteps(environmentId: string, runId: string): Promise<StepView[]> {
    const rows = await this.select<StepResultRow>(
      `SELECT step_id, name, status, attempt, at_ms, output_json, error_json FROM (
         SELECT * FROM ${this.db}.steps
         WHERE environment_id = ${sqlString(checkId("environment_id", environmentId))}
           AND run_id = ${sqlString(checkId("run_id", runId))}
         ORDER BY step_id, attempt, status, at_ms DESC LIMIT 1 BY step_id, attempt, status
       ) ORDER BY at_ms, step_id, attempt`,
    );
    return rows.map((r) => ({
      stepId: r.step_id,
      name: r.name,
      status: r.status as StepStatus,
      attempt: r.attempt,
      atMs: Number(r.at_ms),
      outputJson: r.output_json,
      errorJson: r.error_json,
    }));
  }

  /** The functions an event matched but started no run of, and why, oldest first. */
  async listEventSkips(environmentId: string, eventId: string): Promise<SkipView[]> {
    if (!isEventId(eventId)) throw new ValidationError("event_id is missing or too long");
    const rows = await this.select<{ function_id: string; reason: number; at_ms: string; detail: string }>(
      `SELECT function_id, reason, at_ms, detail FROM (
         SELECT function_id, reason, at_ms, detail FROM ${this.db}.skips
         WHERE environment_id = ${sqlString(checkId("environment_id", environmentId))}
           AND event_id = ${sqlString(eventId)}
         ORDER BY function_id, at_ms DESC LIMIT 1 BY function_id
       ) ORDER BY at_ms, function_id LIMIT ${sqlInt(MAX_EVENT_RUNS)}`,
    );
    return rows.map((r) => ({
      functionId: r.function_id,
      reason: r.reason as SkipReason,
      atMs: Number(r.at_ms),
      detail: r.detail,
    }));
  }

  /** True when ClickHouse answers (readiness). */
  async ping(): Promise<boolean> {
    const res = await this.ch.ping();
    return res.success;
  }

  /** Runs a read; an unreachable ClickHouse becomes UnavailableError (retryable, 503), not INTERNAL. */
  private async select<T>(query: string): Promise<T[]> {
    try {
      const rs = await this.ch.query({ query, format: "JSONEachRow" });
      return await rs.json<T>();
    } catch (err) {
      if (isServerError(err)) throw err;
      throw new UnavailableError("history store unavailable", { cause: err });
    }
  }
}
