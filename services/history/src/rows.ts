// HistoryRecords -> ClickHouse rows (JSONEachRow objects named like the columns). Pure, so the
// consumer's batch logic is testable without servers. Rows of one batch are collapsed to what the
// tables would keep anyway, which keeps inserts small without changing what readers see.
import type { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type {
  HistoryRecord,
  RunRecord,
  SkipRecord,
  StepRecord,
} from "@stepline/proto/stepline/stream/v1/history_record";

export interface RunRow {
  run_id: string;
  account_id: string;
  environment_id: string;
  function_id: string;
  event_id: string;
  status: number;
  started_at_ms: number;
  ended_at_ms: number;
  output_json: string;
  error_json: string;
  version: number;
}

export interface EventRunRow {
  environment_id: string;
  event_id: string;
  run_id: string;
  started_at_ms: number;
}

export interface StepRow {
  run_id: string;
  account_id: string;
  environment_id: string;
  step_id: string;
  name: string;
  status: number;
  attempt: number;
  at_ms: number;
  output_json: string;
  error_json: string;
  started_at_ms: number;
}

export interface EventRow {
  account_id: string;
  environment_id: string;
  event_id: string;
  name: string;
  received_at_ms: number;
  event_json: string;
}

export interface SkipRow {
  account_id: string;
  environment_id: string;
  event_id: string;
  function_id: string;
  reason: number;
  at_ms: number;
  detail: string;
}

/** Rows per table, keyed like `TableName`. */
export interface Rows {
  runs: RunRow[];
  event_runs: EventRunRow[];
  steps: StepRow[];
  skips: SkipRow[];
  events: EventRow[];
}

const ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** True for an id that may be stored and queried (ULIDs and simple names; never SQL or control text). */
export function isId(value: string): boolean {
  return ID.test(value);
}

/** Event ids may be the sender's own idempotency key, so only their length is bounded. */
export function isEventId(value: string): boolean {
  return value.length > 0 && value.length <= 512;
}

/** UInt64 columns: negative or fractional input is clamped rather than refused by ClickHouse. */
const u64 = (n: number) => (Number.isFinite(n) && n > 0 ? Math.trunc(n) : 0);

function runRow(r: RunRecord): RunRow {
  return {
    run_id: r.runId,
    account_id: r.accountId,
    environment_id: r.environmentId,
    function_id: r.functionId,
    event_id: r.eventId,
    status: Math.max(r.status, 0),
    started_at_ms: u64(r.startedAtMs),
    ended_at_ms: u64(r.endedAtMs),
    output_json: r.outputJson,
    error_json: r.errorJson,
    version: u64(r.version),
  };
}

function stepRow(s: StepRecord): StepRow {
  return {
    run_id: s.runId,
    account_id: s.accountId,
    environment_id: s.environmentId,
    step_id: s.stepId,
    name: s.name,
    status: Math.max(s.status, 0),
    attempt: s.attempt,
    at_ms: u64(s.atMs),
    output_json: s.outputJson,
    error_json: s.errorJson,
    started_at_ms: u64(s.startedAtMs),
  };
}

/** The name of an event whose record predates EventRecord.name, read from its JSON ("" if it does not parse). */
function eventName(json: string): string {
  try {
    const name = (JSON.parse(json) as { name?: unknown }).name;
    return typeof name === "string" ? name : "";
  } catch {
    return "";
  }
}

function eventRow(e: EventRecord): EventRow {
  return {
    account_id: e.accountId,
    environment_id: e.environmentId,
    event_id: e.eventId,
    name: e.name || eventName(e.eventJson),
    received_at_ms: u64(e.receivedAtMs),
    event_json: e.eventJson,
  };
}

function skipRow(s: SkipRecord): SkipRow {
  return {
    account_id: s.accountId,
    environment_id: s.environmentId,
    event_id: s.eventId,
    function_id: s.functionId,
    reason: Math.max(s.reason, 0),
    at_ms: u64(s.atMs),
    detail: s.detail.slice(0, 1024),
  };
}

export interface RowsResult {
  rows: Rows;
  /** Records that cannot be stored (missing or malformed ids): logged and dropped, never retried. */
  rejected: Array<HistoryRecord | EventRecord>;
}

/**
 * Turns one batch of records into rows: per run only its greatest version, one event link per
 * (environment, event, run), per step outcome only its latest `at_ms`.
 */
export function rowsOf(records: HistoryRecord[], events: EventRecord[] = []): RowsResult {
  const runs = new Map<string, RunRow>();
  const links = new Map<string, EventRunRow>();
  const steps = new Map<string, StepRow>();
  const skips = new Map<string, SkipRow>();
  const rejected: Array<HistoryRecord | EventRecord> = [];
  for (const rec of records) {
    const r = rec.record;
    if (r?.$case === "run" && isId(r.value.runId) && isId(r.value.environmentId)) {
      const row = runRow(r.value);
      const key = `${row.environment_id}\n${row.run_id}`;
      const prev = runs.get(key);
      if (!prev || prev.version <= row.version) runs.set(key, row);
      if (row.event_id !== "" && isEventId(row.event_id)) {
        const link = { environment_id: row.environment_id, event_id: row.event_id, run_id: row.run_id };
        links.set(`${key}\n${row.event_id}`, { ...link, started_at_ms: row.started_at_ms });
      }
    } else if (r?.$case === "step" && isId(r.value.runId) && isId(r.value.environmentId)) {
      const row = stepRow(r.value);
      const key = [row.environment_id, row.run_id, row.step_id, row.attempt, row.status].join("\n");
      const prev = steps.get(key);
      if (!prev || prev.at_ms <= row.at_ms) steps.set(key, row);
    } else if (
      r?.$case === "skip" &&
      isId(r.value.environmentId) &&
      isEventId(r.value.eventId) &&
      r.value.functionId.length > 0 &&
      r.value.functionId.length <= 512
    ) {
      const row = skipRow(r.value);
      skips.set([row.environment_id, row.event_id, row.function_id].join("\n"), row);
    } else {
      rejected.push(rec);
    }
  }
  const eventRows = new Map<string, EventRow>();
  for (const e of events) {
    if (!isId(e.environmentId) || !isEventId(e.eventId)) {
      rejected.push(e);
      continue;
    }
    const row = eventRow(e);
    eventRows.set([row.environment_id, row.received_at_ms, row.event_id].join("\n"), row);
  }
  return {
    rows: {
      runs: [...runs.values()],
      event_runs: [...links.values()],
      steps: [...steps.values()],
      skips: [...skips.values()],
      events: [...eventRows.values()],
    },
    rejected,
  };
}
