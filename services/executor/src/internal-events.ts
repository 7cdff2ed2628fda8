// Stepline's own events, shaped as Inngest sends them (names and payloads the SDK reads):
// `inngest/function.finished` on every end, `inngest/function.failed` on a failure (what onFailure
// handlers trigger on), `inngest/function.invoked` to start a step.invoke's function. The executor
// produces them to the events topic itself, as event-api produces the events it receives (an
// EventRecord keyed by account), so they take the path of any event from there (the runner,
// history). They go on the producer of the run's history records, so a run's end events and its
// final record share one Kafka request (docs/architecture.md). Their ids are deterministic, so
// sending one again after a crash starts nothing twice.

import type { Clock } from "@stepline/internal/clock";
import { EVENT_MAX_BYTES } from "@stepline/internal/event-limits";
import type { KeyedRecord } from "@stepline/internal/kafka-producer";
import { SpanKind, type TraceParent, withSpan } from "@stepline/internal/telemetry";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import { eventsSentTotal } from "./metrics.js";
import type { RunState } from "./state.js";
import type { PlannedOp } from "./steps.js";

/** One of Stepline's own events, as it is stored (and as the SDK reads it). */
export interface OwnEvent {
  name: string;
  id: string;
  ts: number;
  data: Record<string, unknown>;
  v?: string;
  user?: Record<string, unknown>;
}

/** Sends events of one environment; resolves once Kafka has them. */
export interface EventSender {
  /**
   * `traceParent`: the run's, so the events (and the runs they start) join its trace; "" for an
   * untraced run, whose events then stay untraced too.
   */
  send(accountId: string, environmentId: string, events: OwnEvent[], traceParent: TraceParent): Promise<void>;
}

/**
 * An EventSender that produces EventRecords with `produce` (HistoryProducer.produceEvents), under
 * an `events.produce` span of the run's trace whose context each record carries.
 */
export function kafkaEventSender(
  produce: (records: KeyedRecord[]) => Promise<void>,
  clock: Pick<Clock, "now">,
): EventSender {
  return {
    async send(accountId, environmentId, events, traceParent) {
      if (events.length === 0) return;
      const attributes = { "stepline.environment_id": environmentId, "stepline.events": events.length };
      await withSpan(
        "events.produce",
        { parent: traceParent, kind: SpanKind.PRODUCER, attributes },
        (span) => {
          const receivedAtMs = clock.now();
          const records = events.map((e) => {
            const record: EventRecord = {
              accountId,
              environmentId,
              eventId: e.id,
              receivedAtMs,
              eventJson: eventJsonWithin(e, EVENT_MAX_BYTES),
              name: e.name,
              traceParent: span.traceParent,
            };
            return { key: accountId, value: Buffer.from(EventRecord.encode(record).finish()) };
          });
          return produce(records);
        },
      );
      eventsSentTotal.inc(events.length);
    },
  };
}

/**
 * The event as JSON, at most `maxBytes` when it can be made so: a run's end event carries the
 * run's output or error and its trigger events, any of which may be larger than an event may be.
 * Those are replaced one by one, until it fits, by a note of their size (the run's history keeps
 * the output and error whole). An invoked event's data is bounded when the invoke is planned.
 */
export function eventJsonWithin(e: OwnEvent, maxBytes: number): string {
  let json = JSON.stringify(e);
  if (Buffer.byteLength(json) <= maxBytes) return json;
  const data = { ...e.data };
  const note = (what: string, value: unknown) =>
    `this ${what} (${Buffer.byteLength(JSON.stringify(value) ?? "")} bytes) is larger than an event may carry; the run's history has it`;
  // `events` first: it repeats `event` and holds a batch's events; the error, which onFailure
  // handlers read, goes last but for the trigger event itself.
  const slimmers: Array<[string, (v: unknown) => unknown]> = [
    ["events", () => []],
    ["result", (v) => ({ stepline_omitted: note("result", v) })],
    ["error", (v) => ({ name: "Error", message: note("error", v) })],
    [
      "event",
      (v) => {
        const first = (v ?? {}) as Record<string, unknown>;
        return { name: first.name, id: first.id, ts: first.ts, data: { stepline_omitted: note("event", v) } };
      },
    ],
  ];
  for (const [field, slim] of slimmers) {
    if (!(field in data)) continue;
    data[field] = slim(data[field]);
    json = JSON.stringify({ ...e, data });
    if (Buffer.byteLength(json) <= maxBytes) return json;
  }
  return json;
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
  const out: OwnEvent[] = [
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
): OwnEvent {
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
