// Reads and writes of history's ClickHouse tables. Writes are whole batches (one insert per
// table); reads pick the newest version of each run with ORDER BY version DESC + LIMIT 1 BY, which
// is correct before merges, across partitions and on every ClickHouse version (FINAL is not needed).
import { sqlIdent, sqlInt, sqlString } from "@stepline/internal/clickhouse";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import { ulidTime, ulidTimePrefix } from "@stepline/internal/ids";
import type { SkipReason, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
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
  /** When the attempt began (0 when unknown). */
  startedAtMs: number;
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
  started_at_ms: string | number;
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

/** How far back ListRuns looks for a page, widening while it holds less than one (the last: all). */
const RUN_WINDOWS_MS = [3_600_000, 86_400_000, 7 * 86_400_000, 31 * 86_400_000, Number.POSITIVE_INFINITY];

/** What ListRuns filters on; `limit` is checked by the caller. */
export interface RunFilter {
  environmentId: string;
  statuses: RunStatus[];
  functionId: string;
  eventId: string;
  startedAfterMs: number;
  startedBeforeMs: number;
  limit: number;
  cursor: string;
}

export interface EventFilter {
  environmentId: string;
  name: string;
  receivedAfterMs: number;
  receivedBeforeMs: number;
  limit: number;
  cursor: string;
}

const FAILED = RunStatus.RUN_STATUS_FAILED;

export interface FunctionStatsView {
  functionId: string;
  runsHour: number;
  failedHour: number;
  runsDay: number;
  failedDay: number;
}

export interface MetricsPointView {
  atMs: number;
  runs: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
}

/** An event as received. */
export interface EventView {
  eventId: string;
  name: string;
  receivedAtMs: number;
  eventJson: string;
}

interface EventResultRow {
  event_id: string;
  name: string;
  received_at_ms: string | number;
  event_json: string;
}

function eventView(r: EventResultRow): EventView {
  return {
    eventId: r.event_id,
    name: r.name,
    receivedAtMs: Number(r.received_at_ms),
    eventJson: r.event_json,
  };
}

// Cursors are opaque to callers (base64url), so their form can change without breaking clients.
const encodeCursor = (s: string) => Buffer.from(s, "utf8").toString("base64url");

function decodeCursor(cursor: string): string {
  if (cursor.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(cursor))
    throw new ValidationError("cursor is malformed");
  return Buffer.from(cursor, "base64url").toString("utf8");
}

/** Function ids are `<app>-<fn>` as the SDK sends them (sqlString escapes them); only bounded. */
function checkFunctionId(value: string): string {
  if (value.length > 512) throw new ValidationError("function_id is too long");
  return value;
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
      `SELECT step_id, name, status, attempt, started_at_ms, at_ms, output_json, error_json FROM (
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
      startedAtMs: Number(r.started_at_ms),
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

  /**
   * A page of an environment's runs, newest first. Run ids are ULIDs, so id order is start order
   * and the cursor is the last id shown. Two reads: the page's ids from narrow columns (the
   * current status of each run is its newest version's), then only those runs' rows. The ids are
   * looked for in windows of run ids going back from the cursor (or now): the last hour, day, week,
   * month, then all; a wider window is read only when a narrower one held less than a page, so a
   * page of a busy environment reads its last hour, not all its history.
   */
  async listRuns(f: RunFilter): Promise<{ runs: RunView[]; nextCursor: string }> {
    const env = sqlString(checkId("environment_id", f.environmentId));
    const where = [`environment_id = ${env}`];
    if (f.functionId) where.push(`function_id = ${sqlString(checkFunctionId(f.functionId))}`);
    if (f.startedAfterMs > 0) where.push(`started_at_ms >= ${sqlInt(f.startedAfterMs)}`);
    if (f.startedBeforeMs > 0) where.push(`started_at_ms < ${sqlInt(f.startedBeforeMs)}`);
    const cursorId = f.cursor ? checkId("cursor", decodeCursor(f.cursor)) : "";
    if (cursorId) where.push(`run_id < ${sqlString(cursorId)}`);
    if (f.eventId) {
      if (!isEventId(f.eventId)) throw new ValidationError("event_id is too long");
      where.push(`run_id IN (SELECT run_id FROM ${this.db}.event_runs
        WHERE environment_id = ${env} AND event_id = ${sqlString(f.eventId)})`);
    }
    const statuses = f.statuses.map((st) => sqlInt(st)).join(", ");
    // Windows go back from the cursor's time, the range's end, or now (the first page has no upper
    // bound on ids: clocks may be ahead).
    const upperMs = Math.min(
      (cursorId ? ulidTime(cursorId) : null) ?? Date.now(),
      f.startedBeforeMs > 0 ? f.startedBeforeMs : Number.POSITIVE_INFINITY,
    );
    const windows = f.eventId ? [Number.POSITIVE_INFINITY] : RUN_WINDOWS_MS;
    let ids: Array<{ run_id: string }> = [];
    for (const span of windows) {
      const lower = Number.isFinite(span) ? [`run_id >= ${sqlString(ulidTimePrefix(upperMs - span))}`] : [];
      ids = await this.select<{ run_id: string }>(
        `SELECT run_id FROM (
           SELECT run_id, argMax(status, version) AS current FROM ${this.db}.runs
           WHERE ${[...where, ...lower].join(" AND ")} GROUP BY run_id
         ) ${statuses ? `WHERE current IN (${statuses})` : ""}
         ORDER BY run_id DESC LIMIT ${sqlInt(f.limit + 1)}`,
      );
      if (ids.length > f.limit) break;
    }
    const page = ids.slice(0, f.limit).map((r) => r.run_id);
    if (page.length === 0) return { runs: [], nextCursor: "" };
    const rows = await this.select<RunResultRow>(
      `SELECT ${RUN_COLUMNS} FROM ${this.db}.runs
       WHERE environment_id = ${env} AND run_id IN (${page.map(sqlString).join(", ")})
       ORDER BY run_id DESC, version DESC LIMIT 1 BY run_id`,
    );
    const last = page[page.length - 1] as string;
    return { runs: rows.map(runView), nextCursor: ids.length > f.limit ? encodeCursor(last) : "" };
  }

  /** A page of an environment's events, newest first; the cursor is the last one's (time, id). */
  async listEvents(f: EventFilter): Promise<{ events: EventView[]; nextCursor: string }> {
    const where = [`environment_id = ${sqlString(checkId("environment_id", f.environmentId))}`];
    if (f.name) {
      if (f.name.length > 512) throw new ValidationError("name is too long");
      where.push(`name = ${sqlString(f.name)}`);
    }
    if (f.receivedAfterMs > 0) where.push(`received_at_ms >= ${sqlInt(f.receivedAfterMs)}`);
    if (f.receivedBeforeMs > 0) where.push(`received_at_ms < ${sqlInt(f.receivedBeforeMs)}`);
    if (f.cursor) {
      const c = decodeCursor(f.cursor);
      const cut = c.indexOf(":");
      const atMs = Number(c.slice(0, cut));
      const id = c.slice(cut + 1);
      if (cut < 1 || !Number.isSafeInteger(atMs) || !isEventId(id))
        throw new ValidationError("cursor is malformed");
      where.push(
        `(received_at_ms < ${sqlInt(atMs)} OR (received_at_ms = ${sqlInt(atMs)} AND event_id < ${sqlString(id)}))`,
      );
    }
    const rows = await this.select<EventResultRow>(
      `SELECT event_id, name, received_at_ms, event_json FROM ${this.db}.events
       WHERE ${where.join(" AND ")}
       ORDER BY received_at_ms DESC, event_id DESC LIMIT 1 BY received_at_ms, event_id
       LIMIT ${sqlInt(f.limit + 1)}`,
    );
    const events = rows.slice(0, f.limit).map(eventView);
    const last = events[events.length - 1];
    const more = rows.length > f.limit && last;
    return { events, nextCursor: more ? encodeCursor(`${last.receivedAtMs}:${last.eventId}`) : "" };
  }

  /** The newest event with this id in the environment, or null. */
  async getEvent(environmentId: string, eventId: string): Promise<EventView | null> {
    if (!isEventId(eventId)) throw new ValidationError("event_id is missing or too long");
    const rows = await this.select<EventResultRow>(
      `SELECT event_id, name, received_at_ms, event_json FROM ${this.db}.events
       WHERE environment_id = ${sqlString(checkId("environment_id", environmentId))}
         AND event_id = ${sqlString(eventId)}
       ORDER BY received_at_ms DESC LIMIT 1`,
    );
    return rows[0] ? eventView(rows[0]) : null;
  }

  /**
   * Each function's runs that ended in the hour and the day before `nowMs`, and their failures.
   * Only a run's final version has an end time, so the end filter reads ended runs directly.
   */
  async functionStats(environmentId: string, nowMs: number): Promise<FunctionStatsView[]> {
    const hourAgo = nowMs - 3_600_000;
    const rows = await this.select<Record<keyof FunctionStatsView, string | number>>(
      `SELECT function_id AS functionId,
         countIf(ended >= ${sqlInt(hourAgo)}) AS runsHour,
         countIf(ended >= ${sqlInt(hourAgo)} AND status = ${sqlInt(FAILED)}) AS failedHour,
         count() AS runsDay,
         countIf(status = ${sqlInt(FAILED)}) AS failedDay
       FROM (
         SELECT run_id, any(function_id) AS function_id, any(status) AS status, any(ended_at_ms) AS ended
         FROM ${this.db}.runs
         WHERE environment_id = ${sqlString(checkId("environment_id", environmentId))}
           AND ended_at_ms >= ${sqlInt(nowMs - 86_400_000)} AND ended_at_ms <= ${sqlInt(nowMs)}
         GROUP BY run_id
       ) GROUP BY function_id ORDER BY function_id`,
    );
    return rows.map((r) => ({
      functionId: String(r.functionId),
      runsHour: Number(r.runsHour),
      failedHour: Number(r.failedHour),
      runsDay: Number(r.runsDay),
      failedDay: Number(r.failedDay),
    }));
  }

  /** One function's runs that ended in [fromMs, toMs), per bucket: count, failures, p50/p99 duration. */
  async functionMetrics(q: {
    environmentId: string;
    functionId: string;
    fromMs: number;
    toMs: number;
    bucketSeconds: number;
  }): Promise<MetricsPointView[]> {
    const width = q.bucketSeconds * 1000;
    const rows = await this.select<Record<keyof MetricsPointView, string | number>>(
      `SELECT intDiv(ended, ${sqlInt(width)}) * ${sqlInt(width)} AS atMs,
         count() AS runs,
         countIf(status = ${sqlInt(FAILED)}) AS failed,
         toUInt64(quantile(0.5)(ended - started)) AS p50Ms,
         toUInt64(quantile(0.99)(ended - started)) AS p99Ms
       FROM (
         SELECT run_id, any(status) AS status, any(ended_at_ms) AS ended, any(started_at_ms) AS started
         FROM ${this.db}.runs
         WHERE environment_id = ${sqlString(checkId("environment_id", q.environmentId))}
           AND function_id = ${sqlString(checkFunctionId(q.functionId))}
           AND ended_at_ms >= ${sqlInt(q.fromMs)} AND ended_at_ms < ${sqlInt(q.toMs)}
         GROUP BY run_id
       ) GROUP BY atMs ORDER BY atMs`,
    );
    return rows.map((r) => ({
      atMs: Number(r.atMs),
      runs: Number(r.runs),
      failed: Number(r.failed),
      p50Ms: Number(r.p50Ms),
      p99Ms: Number(r.p99Ms),
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
