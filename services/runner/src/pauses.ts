// Matching a batch of events against the waits (step.waitForEvent) on their names. The executor
// owns the waits and their index (ExecutorService.ListPauses / ResumePauses); the runner evaluates
// each wait's CEL `if` here, with the run's trigger event as `event` and the candidate as `async`.
// Cost: one ListPauses per chunk of events (a message on a stream), then O(waits on each event's
// name) per event.

import { CallStream } from "@stepline/internal/call-stream";
import { callUnary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type {
  ExecutorServiceClient,
  ListPausesAnswer,
  ListPausesCall,
  ListPausesStreamRequest,
  ListPausesStreamResponse,
  Pause,
  PauseQuery,
  PauseResume,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import { celMatches } from "./expr.js";
import { INVOKED, invokeTarget } from "./match.js";

/** The executor's wait index, as the consumer uses it. */
export interface PauseIndex {
  list(queries: PauseQuery[]): Promise<Pause[]>;
  resume(resumes: PauseResume[]): Promise<void>;
}

/**
 * PauseIndex over gRPC, with a deadline per call: listing (once per batch) on the executor's
 * ListPausesStream, resuming (only when an event matched) unary; `close` ends the stream.
 */
export function grpcPauses(
  client: ExecutorServiceClient,
  deadlineMs: number,
  log: Logger,
): PauseIndex & { close(): Promise<void> } {
  const lists = new CallStream<
    ListPausesCall,
    ListPausesAnswer,
    ListPausesStreamRequest,
    ListPausesStreamResponse
  >({
    open: () => client.listPausesStream(),
    pack: (calls) => ({ calls }),
    unpack: (res) => res.answers,
    deadlineMs,
    sizeOf: (c) => c.queries.reduce((n, q) => n + q.eventName.length + q.environmentId.length, 0),
    what: "ListPauses",
    peer: "the executor",
    log,
  });
  return {
    async list(queries) {
      if (queries.length === 0) return [];
      return (await lists.call({ queries })).pauses;
    },
    async resume(resumes) {
      if (resumes.length === 0) return;
      await callUnary(client.resumePauses.bind(client), { resumes }, deadlineMs);
    },
    close: () => lists.close(),
  };
}

/** An event as the matcher needs it. */
export interface WaitCandidate {
  environmentId: string;
  name: string;
  eventId: string;
  receivedAtMs: number;
  /** The parsed event (CEL's `async`) and its JSON text (the wait's result). */
  event: unknown;
  eventJson: string;
}

/** The distinct (environment, name) pairs of a batch's events: what to ask ListPauses for. */
export function pauseQueries(events: WaitCandidate[]): PauseQuery[] {
  const seen = new Map<string, PauseQuery>();
  for (const e of events) {
    seen.set(`${e.environmentId}\n${e.name}`, { environmentId: e.environmentId, eventName: e.name });
  }
  return [...seen.values()];
}

/**
 * Which waits the events resume, in event order: a wait matches the first event of its name and
 * environment received within its lifetime (at or after it began, not after its timeout) whose
 * `if` is true. Each wait resumes at most once; an event may resume many waits.
 */
export function matchPauses(events: WaitCandidate[], pauses: Pause[]): PauseResume[] {
  const byName = new Map<string, Array<{ pause: Pause; trigger: unknown; done: boolean }>>();
  for (const pause of pauses) {
    const key = `${pause.environmentId}\n${pause.eventName}`;
    const list = byName.get(key) ?? [];
    list.push({ pause, trigger: parseOr(pause.triggerEventJson), done: false });
    byName.set(key, list);
  }
  const out: PauseResume[] = [];
  for (const e of events) {
    for (const w of byName.get(`${e.environmentId}\n${e.name}`) ?? []) {
      if (w.done || e.receivedAtMs < w.pause.createdAtMs || e.receivedAtMs > w.pause.timeoutAtMs) continue;
      if (w.pause.expression && !celMatches(w.pause.expression, { event: w.trigger, async: e.event }))
        continue;
      w.done = true;
      out.push({
        runId: w.pause.runId,
        opId: w.pause.opId,
        environmentId: e.environmentId,
        eventName: e.name,
        eventId: e.eventId,
        eventJson: e.eventJson,
        errorJson: "",
        cancel: w.pause.cancel,
      });
    }
  }
  return out;
}

function parseOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/**
 * The resume that fails a step.invoke whose function is not synced in the event's environment:
 * the parent's invoke op (named by the correlation id `<run id>.<op id>`) resolves with an error
 * the user's code can catch. Null for an event without a usable correlation id.
 */
export function unknownInvokeTarget(record: EventRecord, event: unknown): PauseResume | null {
  const corr = (event as { data?: { _inngest?: { correlation_id?: unknown } } } | null)?.data?._inngest
    ?.correlation_id;
  if (typeof corr !== "string") return null;
  const cut = corr.lastIndexOf(".");
  if (cut <= 0 || cut === corr.length - 1) return null;
  const target = invokeTarget(event) ?? "(none)";
  return {
    runId: corr.slice(0, cut),
    opId: corr.slice(cut + 1),
    environmentId: record.environmentId,
    eventName: INVOKED,
    eventId: record.eventId,
    eventJson: record.eventJson,
    cancel: false,
    errorJson: JSON.stringify({
      name: "Error",
      message: `could not invoke function ${JSON.stringify(target)}: no function with that id is synced in this environment`,
    }),
  };
}
