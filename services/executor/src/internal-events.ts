// Stepline's own events, shaped as Inngest sends them (names and payloads the SDK reads):
// `inngest/function.finished` on every end, `inngest/function.failed` on a failure (what onFailure
// handlers trigger on), `inngest/function.invoked` to start a step.invoke's function. They go
// through event-api's EventService (its SendEventsStream), so they take the path of any event
// (Kafka, the runner), and their ids are deterministic, so sending one again after a crash starts
// nothing twice.

import { CallStream } from "@stepline/internal/call-stream";
import { callUnary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import { type TraceParent, unsampledParent } from "@stepline/internal/telemetry";
import type {
  EventServiceClient,
  SendEventsCall,
  SendEventsResult,
  SendEventsStreamRequest,
  SendEventsStreamResponse,
} from "@stepline/proto/stepline/eventapi/v1/event_service";
import type { RunState } from "./state.js";
import type { PlannedOp } from "./steps.js";

/** Sends events of one environment; resolves once Kafka has them. */
export interface EventSender {
  /**
   * `traceParent`: the run's, so the events (and the runs they start) join its trace; "" for an
   * untraced run, whose events then stay untraced too.
   */
  send(accountId: string, environmentId: string, events: object[], traceParent: TraceParent): Promise<void>;
}

/** Sends events given as JSON (as EventService.SendEvents takes them); resolves once Kafka has them. */
export type SendEventsJson = (
  accountId: string,
  environmentId: string,
  eventsJson: string[],
  traceParent: TraceParent,
) => Promise<void>;

/**
 * SendEventsJson over EventService.SendEventsStream (event-batches.ts merges sends): a turn's
 * sends in one message, each answered by id, with a deadline per call. Safe to resend: an event's
 * id is its idempotency key. An event-api too old to serve the stream gets unary SendEvents calls.
 */
export function streamSendEvents(
  client: EventServiceClient,
  deadlineMs: number,
  log: Logger,
): SendEventsJson & { close(): Promise<void> } {
  const stream = new CallStream<
    SendEventsCall,
    SendEventsResult,
    SendEventsStreamRequest,
    SendEventsStreamResponse
  >({
    open: () => client.sendEventsStream(),
    pack: (calls) => ({ calls }),
    unpack: (res) => res.results,
    deadlineMs,
    sizeOf: (c) => c.eventsJson.reduce((n, e) => n + e.length, 0),
    what: "Stepline's own events",
    peer: "event-api",
    log,
    // A call without its id has exactly the fields of a SendEventsRequest.
    unary: async (call) => ({ ids: (await callUnary(client.sendEvents.bind(client), call, deadlineMs)).ids }),
  });
  const send = async (
    accountId: string,
    environmentId: string,
    eventsJson: string[],
    traceParent: TraceParent,
  ) => {
    await stream.call({
      accountId,
      environmentId,
      eventsJson,
      traceParent: traceParent || unsampledParent(),
    });
  };
  return Object.assign(send, { close: () => stream.close() });
}

export const FINISHED = "inngest/function.finished";
export const FAILED = "inngest/function.failed";
export const INVOKED = "inngest/function.invoked";
export const CANCELLED = "inngest/function.cancelled";

/** Where an invoked run reports back: its parent run and the parent's invoke op. */
export interface Correlation {
  id: string;
  parentRunId: string;
  opId: string;
}

/** The correlation id of an invoke: `<parent run id>.<hashed step id>` (as Inngest builds it). */
export function correlationId(runId: string, opId: string): string {
  return `${runId}.${opId}`;
}

/** The invoke that started this run, when its trigger event is `inngest/function.invoked`. */
export function correlationOf(run: Pick<RunState, "eventsJson">): Correlation | null {
  const [first] = parseEvents(run.eventsJson);
  if (!first || first.name !== INVOKED) return null;
  const id = (first.data as { _inngest?: { correlation_id?: unknown } } | undefined)?._inngest
    ?.correlation_id;
  if (typeof id !== "string") return null;
  const cut = id.lastIndexOf(".");
  if (cut <= 0 || cut === id.length - 1) return null;
  return { id, parentRunId: id.slice(0, cut), opId: id.slice(cut + 1) };
}

/**
 * The events of a run's end: `function.finished`, plus `function.failed` when it failed or
 * `function.cancelled` (the same data, without result or error) when it was cancelled.
 */
export function endEvents(
  run: RunState,
  outcome: Pick<RunState, "status" | "output" | "error" | "endedAtMs">,
) {
  const events = parseEvents(run.eventsJson);
  const correlation = correlationOf(run);
  const status =
    outcome.status === "completed" ? "Completed" : outcome.status === "failed" ? "Failed" : "Cancelled";
  const base = {
    function_id: run.functionId,
    run_id: run.runId,
    event: events[0] ?? {},
    events,
    ...(correlation ? { correlation_id: correlation.id } : {}),
    _inngest: { status },
  };
  const result: Record<string, unknown> = {};
  if (outcome.status === "completed") result.result = parseOr(outcome.output, null);
  if (outcome.status === "failed")
    result.error = parseOr(outcome.error, { name: "Error", message: "unknown error" });
  const out: object[] = [
    { name: FINISHED, id: `${run.runId}.finished`, ts: outcome.endedAtMs, data: { ...base, ...result } },
  ];
  if (outcome.status === "failed") {
    out.push({
      name: FAILED,
      id: `${run.runId}.failed`,
      ts: outcome.endedAtMs,
      data: { ...base, ...result },
    });
  }
  if (outcome.status === "cancelled") {
    out.push({ name: CANCELLED, id: `${run.runId}.cancelled`, ts: outcome.endedAtMs, data: base });
  }
  return out;
}

/** The `inngest/function.invoked` event that starts an invoke's function. */
export function invokedEvent(
  run: RunState,
  plan: Extract<PlannedOp, { kind: "invoke" }>,
  nowMs: number,
): object {
  const id = correlationId(run.runId, plan.id);
  return {
    name: INVOKED,
    id,
    ts: nowMs,
    ...(plan.payload.v ? { v: plan.payload.v } : {}),
    ...(plan.payload.user ? { user: plan.payload.user } : {}),
    data: {
      ...plan.payload.data,
      _inngest: {
        fn_id: plan.functionId,
        correlation_id: id,
        source_app_id: run.appId,
        source_fn_id: run.functionId,
        source_fn_v: run.functionVersion,
        expire: plan.timeoutAtMs,
      },
    },
  };
}

function parseEvents(eventsJson: string): Array<Record<string, unknown>> {
  const v = parseOr(eventsJson, []);
  return Array.isArray(v) ? (v as Array<Record<string, unknown>>) : [];
}

/** `text` parsed as JSON, or `fallback` when it is empty or not JSON. */
export function parseOr(text: string, fallback: unknown): unknown {
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}
