// Small clients for Stepline's public HTTP API, as a user would call it.
import { waitFor } from "@stepline/internal/testing";

export interface RunView {
  run_id: string;
  event_id: string;
  function_id: string;
  status: "Running" | "Completed" | "Failed" | "Cancelled";
  run_started_at: string;
  ended_at: string | null;
  output: unknown;
  error?: unknown;
}

export async function sendEvents(
  apiUrl: string,
  key: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${apiUrl}/e/${key}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

function authHeaders(auth?: string): Record<string, string> {
  return auth ? { authorization: `Bearer ${auth}` } : {};
}

export async function eventRuns(apiUrl: string, eventId: string, auth?: string): Promise<RunView[]> {
  const res = await fetch(`${apiUrl}/v1/events/${eventId}/runs`, { headers: authHeaders(auth) });
  if (res.status !== 200) throw new Error(`GET /v1/events/${eventId}/runs answered ${res.status}`);
  return ((await res.json()) as { data: RunView[] }).data;
}

export async function getRun(apiUrl: string, runId: string, auth?: string): Promise<RunView> {
  const res = await fetch(`${apiUrl}/v1/runs/${runId}`, { headers: authHeaders(auth) });
  if (res.status !== 200) throw new Error(`GET /v1/runs/${runId} answered ${res.status}`);
  return ((await res.json()) as { data: RunView }).data;
}

/** Waits until the event's runs (at least `count`) have all ended, and returns them. */
export async function waitForEndedRuns(
  apiUrl: string,
  eventId: string,
  opts: { auth?: string; count?: number; timeoutMs?: number } = {},
): Promise<RunView[]> {
  return waitFor(
    `runs of event ${eventId} to end`,
    async () => {
      const runs = await eventRuns(apiUrl, eventId, opts.auth);
      return runs.length >= (opts.count ?? 1) && runs.every((r) => r.status !== "Running") ? runs : undefined;
    },
    { timeoutMs: opts.timeoutMs ?? 45_000, intervalMs: 200 },
  );
}
