// The JSON shapes of the REST API's newer reads (apps, functions, events, steps): Inngest's field
// names where Inngest has the same endpoint, snake_case and ISO times everywhere. Pure functions,
// so each shape is tested without servers. Documented in the README ("REST API").
import type { Event, FunctionStats, Step } from "@stepline/proto/stepline/history/v1/history_service";
import type { App, RegisteredFunction } from "@stepline/proto/stepline/runner/v1/runner_service";
import { StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";

const iso = (ms: number) => new Date(ms).toISOString();

/** Stored JSON parsed; text that is not JSON is returned as it is rather than hidden. */
export function parseOrRaw(json: string): unknown {
  if (!json) return undefined;
  try {
    return JSON.parse(json);
  } catch {
    return json;
  }
}

export interface EventView {
  id: string;
  name: string;
  data: unknown;
  user: unknown;
  ts: number | null;
  v: string | null;
  received_at: string;
}

export function eventView(e: Event): EventView {
  const body = (parseOrRaw(e.eventJson) ?? {}) as Record<string, unknown>;
  return {
    id: e.eventId,
    name: e.name,
    data: body.data ?? {},
    user: body.user ?? null,
    ts: typeof body.ts === "number" ? body.ts : null,
    v: typeof body.v === "string" ? body.v : null,
    received_at: iso(e.receivedAtMs),
  };
}

const STEP_STATUS: Record<number, string> = {
  [StepStatus.STEP_STATUS_COMPLETED]: "Completed",
  [StepStatus.STEP_STATUS_ERRORED]: "Errored",
  [StepStatus.STEP_STATUS_FAILED]: "Failed",
  [StepStatus.STEP_STATUS_SLEEPING]: "Sleeping",
  [StepStatus.STEP_STATUS_WAITING]: "Waiting",
  [StepStatus.STEP_STATUS_INVOKING]: "Invoking",
};

export interface StepView {
  step_id: string;
  name: string;
  status: string;
  attempt: number;
  started_at: string | null;
  ended_at: string;
  output: unknown;
  error: unknown;
}

export function stepView(s: Step): StepView {
  return {
    step_id: s.stepId,
    name: s.name,
    status: STEP_STATUS[s.status] ?? "Unknown",
    attempt: s.attempt,
    started_at: s.startedAtMs > 0 ? iso(s.startedAtMs) : null,
    ended_at: iso(s.atMs),
    output: parseOrRaw(s.outputJson) ?? null,
    error: parseOrRaw(s.errorJson) ?? null,
  };
}

export interface AppView {
  id: string;
  url: string;
  sdk: string;
  framework: string;
  synced_at: string | null;
  functions: number;
  error: string | null;
}

export function appView(a: App): AppView {
  return {
    id: a.appId,
    url: a.url,
    sdk: a.sdk,
    framework: a.framework,
    synced_at: a.lastSyncAtMs > 0 ? iso(a.lastSyncAtMs) : null,
    functions: a.functions,
    error: a.lastSyncError || null,
  };
}

/** The SDK's flow-control options as synced, under the REST API's names; only those that are set. */
const FLOW_KEYS: Array<[sdk: string, rest: string]> = [
  ["concurrency", "concurrency"],
  ["throttle", "throttle"],
  ["rateLimit", "rate_limit"],
  ["debounce", "debounce"],
  ["batchEvents", "batch_events"],
  ["priority", "priority"],
  ["idempotency", "idempotency"],
  ["singleton", "singleton"],
  ["cancel", "cancel_on"],
  ["timeouts", "timeouts"],
];

/** Ended runs and failures over the last hour and day. */
export interface FunctionStatsView {
  hour: { runs: number; failed: number };
  day: { runs: number; failed: number };
}

export function functionStatsView(s: FunctionStats | undefined): FunctionStatsView {
  return {
    hour: { runs: s?.runsHour ?? 0, failed: s?.failedHour ?? 0 },
    day: { runs: s?.runsDay ?? 0, failed: s?.failedDay ?? 0 },
  };
}

export interface FunctionView {
  id: string;
  name: string;
  app_id: string;
  triggers: Array<{ event: string; expression: string | null } | { cron: string }>;
  retries: number;
  flow: Record<string, unknown>;
  paused: boolean;
  stats: FunctionStatsView;
}

export function functionView(f: RegisteredFunction, paused: boolean, stats?: FunctionStats): FunctionView {
  const config = f.config;
  const raw = (parseOrRaw(config?.rawJson ?? "") ?? {}) as Record<string, unknown>;
  const flow: Record<string, unknown> = {};
  for (const [sdk, rest] of FLOW_KEYS) if (raw[sdk] !== undefined && raw[sdk] !== null) flow[rest] = raw[sdk];
  return {
    id: config?.id ?? "",
    name: config?.name ?? "",
    app_id: f.appId,
    triggers: (config?.triggers ?? []).map((t) =>
      t.cron ? { cron: t.cron } : { event: t.event, expression: t.expression || null },
    ),
    retries: config?.retries ?? 0,
    flow,
    paused,
    stats: functionStatsView(stats),
  };
}
