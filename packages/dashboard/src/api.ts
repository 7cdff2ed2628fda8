// The one place that talks to the REST API (the README's "REST API"). Every call goes through `request`,
// which adds the environment and CSRF headers and turns any non-2xx answer into an ApiError carrying
// the server's `error` text, so pages can show it as is.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface ListAnswer<T> {
  data: T[];
  metadata?: { fetched_at: string; cached_until: string | null };
  cursor: string | null;
}
export interface DataAnswer<T> {
  data: T;
}

export interface Environment {
  id: string;
  name: string;
  account_id: string;
}
export interface EnvironmentsAnswer {
  data: Environment[];
  current: string;
}

export interface Settings {
  mode: "dev" | "production";
  history_retention_days: number;
  signed_in_as: string | null;
}
export interface Session {
  user: string;
  csrf_token: string;
}

export interface App {
  id: string;
  url: string;
  sdk: string | null;
  framework: string | null;
  synced_at: string | null;
  functions: number;
  error: string | null;
}
export interface SyncResult {
  url: string;
  modified: boolean;
}

export type Trigger = { event: string; expression?: string | null } | { cron: string };
export interface Flow {
  concurrency?: Json;
  throttle?: Json;
  rate_limit?: Json;
  debounce?: Json;
  batch_events?: Json;
  priority?: Json;
  idempotency?: string | null;
  singleton?: Json;
  cancel_on?: Json[];
}
export interface PeriodStats {
  runs: number;
  failed: number;
}
export interface Fn {
  id: string;
  name: string;
  app_id: string;
  triggers: Trigger[];
  retries?: number;
  flow: Flow;
  paused: boolean;
  stats: { hour: PeriodStats; day: PeriodStats };
}
export interface MetricsPoint {
  t: string;
  runs: number;
  failed: number;
  p50_ms: number | null;
  p99_ms: number | null;
}
export interface Metrics {
  bucket_seconds: number;
  points: MetricsPoint[];
}

export interface StepError {
  name: string;
  message: string;
  stack?: string | null;
}
export interface StoredEvent {
  id: string;
  name: string;
  data: Json;
  user: Json;
  ts: number;
  v: string | null;
  received_at: string;
}
export interface Skip {
  function_id: string;
  reason: string;
  skipped_at: string;
  detail: Json;
}
export type RunStatus = "Running" | "Completed" | "Failed" | "Cancelled";
export const RUN_STATUSES: RunStatus[] = ["Running", "Completed", "Failed", "Cancelled"];
export interface Run {
  run_id: string;
  event_id: string;
  function_id: string;
  status: RunStatus;
  run_started_at: string;
  ended_at: string | null;
  output: Json;
  error?: StepError | null;
}
export type StepStatus = "Completed" | "Errored" | "Failed" | "Sleeping" | "Waiting" | "Invoking";
export interface Step {
  step_id: string;
  name: string;
  status: StepStatus;
  attempt: number;
  started_at: string;
  ended_at: string | null;
  output: Json;
  error: StepError | null;
}
/** The run-list filter; the same shape is the body of the bulk cancel/replay calls. */
export interface RunFilter {
  status?: string;
  function_id?: string;
  event_id?: string;
  started_after?: string;
  started_before?: string;
}

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

let environmentId: string | null = null;
let csrfToken: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setEnvironment(id: string | null): void {
  environmentId = id;
}
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}
/** Called on any 401 so the shell can go back to the sign-in form. */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (environmentId) headers["X-Stepline-Environment"] = environmentId;
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Could not reach the server. Is Stepline running?");
  }
  const text = await res.text();
  let parsed: unknown = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!res.ok) {
    const serverMessage =
      parsed && typeof parsed === "object" && "error" in parsed ? String(parsed.error) : null;
    if (res.status === 401 && onUnauthorized) onUnauthorized();
    throw new ApiError(res.status, serverMessage ?? `${res.status} ${res.statusText || "request failed"}`);
  }
  return parsed as T;
}

function query(params: Record<string, string | number | undefined | null>): string {
  const qs = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") qs.set(key, String(value));
  }
  const s = qs.toString();
  return s ? `?${s}` : "";
}

const enc = encodeURIComponent;

export const api = {
  settings: () => request<DataAnswer<Settings>>("GET", "/v1/settings"),
  session: () => request<DataAnswer<Session>>("GET", "/v1/session"),
  signIn: (username: string, password: string) =>
    request<DataAnswer<Session>>("POST", "/v1/session", { username, password }),
  signOut: () => request<unknown>("DELETE", "/v1/session"),
  environments: () => request<EnvironmentsAnswer>("GET", "/v1/environments"),

  apps: () => request<ListAnswer<App>>("GET", "/v1/apps"),
  syncApp: (url: string) => request<DataAnswer<SyncResult>>("POST", "/v1/apps/sync", { url }),

  functions: () => request<ListAnswer<Fn>>("GET", "/v1/functions"),
  pauseFunction: (id: string) =>
    request<DataAnswer<{ id: string; paused: boolean }>>("POST", `/v1/functions/${enc(id)}/pause`),
  resumeFunction: (id: string) =>
    request<DataAnswer<{ id: string; paused: boolean }>>("POST", `/v1/functions/${enc(id)}/resume`),
  invokeFunction: (id: string, data: JsonObject) =>
    request<DataAnswer<{ event_id: string; run_id: string | null }>>(
      "POST",
      `/v1/functions/${enc(id)}/invoke`,
      { data },
    ),
  metrics: (id: string, from: number, to: number, bucket: number) =>
    request<DataAnswer<Metrics>>("GET", `/v1/functions/${enc(id)}/metrics${query({ from, to, bucket })}`),

  events: (params: { name?: string; limit?: number; cursor?: string | null; received_after?: string }) =>
    request<ListAnswer<StoredEvent>>("GET", `/v1/events${query(params)}`),
  event: (id: string) => request<DataAnswer<StoredEvent>>("GET", `/v1/events/${enc(id)}`),
  eventRuns: (id: string) => request<ListAnswer<Run>>("GET", `/v1/events/${enc(id)}/runs`),
  eventSkips: (id: string) => request<ListAnswer<Skip>>("GET", `/v1/events/${enc(id)}/skips`),
  sendEvents: (payload: Json) => request<{ ids: string[]; status: number }>("POST", "/v1/events", payload),

  runs: (filter: RunFilter, cursor: string | null, limit = 50) =>
    request<ListAnswer<Run>>("GET", `/v1/runs${query({ ...filter, cursor, limit })}`),
  run: (id: string) => request<DataAnswer<Run>>("GET", `/v1/runs/${enc(id)}`),
  runSteps: (id: string) => request<ListAnswer<Step>>("GET", `/v1/runs/${enc(id)}/steps`),
  cancelRun: (id: string) =>
    request<DataAnswer<{ run_id: string; status: RunStatus }>>("DELETE", `/v1/runs/${enc(id)}`),
  replayRun: (id: string) =>
    request<DataAnswer<{ run_id: string; event_id: string }>>("POST", `/v1/runs/${enc(id)}/replay`),
  cancelRuns: (filter: RunFilter) =>
    request<DataAnswer<{ matched: number; cancelled: number }>>("POST", "/v1/runs/cancel", filter),
  replayRuns: (filter: RunFilter) =>
    request<DataAnswer<{ matched: number; replayed: number }>>("POST", "/v1/runs/replay", filter),
};

/** Text for any thrown value, for the error banner. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
