// Group commit for Stepline's own events: every run's end sends `inngest/function.finished`, and a
// unary EventService call per run costs more CPU on both sides than the event itself (the design's
// hot-path note, docs/architecture.md). While a send of one environment is in flight, the sends
// that arrive for it wait and then go together in the next call; an idle executor's send goes at
// once. Only sends with the same trace parent are merged (a call carries one), which is every send
// while tracing is off.

import { ValidationError } from "@stepline/internal/errors";
import type { TraceParent } from "@stepline/internal/telemetry";
import type { EventSender, SendEventsJson } from "./internal-events.js";
import { eventSendsTotal, eventsSentTotal } from "./metrics.js";

interface Waiting {
  events: string[];
  bytes: number;
  resolve(): void;
  reject(err: unknown): void;
}

interface Group {
  accountId: string;
  environmentId: string;
  traceParent: TraceParent;
  waiting: Waiting[];
  inFlight: boolean;
}

export interface EventBatchLimits {
  /** Events per call at most (a single send with more goes alone). */
  maxEvents: number;
  /** Bytes of event JSON per call at most (a single larger send goes alone). */
  maxBytes: number;
}

/** An EventSender that merges concurrent sends of one environment into one call of `send`. */
export function batchingEventSender(
  send: SendEventsJson,
  limits: EventBatchLimits = { maxEvents: 200, maxBytes: 1024 * 1024 },
): EventSender {
  const groups = new Map<string, Group>();

  const pump = (key: string, g: Group): void => {
    if (g.inFlight) return;
    const batch: Waiting[] = [];
    let events = 0;
    let bytes = 0;
    while (g.waiting.length > 0) {
      const next = g.waiting[0] as Waiting;
      const full = events + next.events.length > limits.maxEvents || bytes + next.bytes > limits.maxBytes;
      if (batch.length > 0 && full) break;
      batch.push(next);
      events += next.events.length;
      bytes += next.bytes;
      g.waiting.shift();
    }
    if (batch.length === 0) {
      groups.delete(key);
      return;
    }
    g.inFlight = true;
    void sendBatch(g, batch).finally(() => {
      g.inFlight = false;
      pump(key, g);
    });
  };

  const sendBatch = async (g: Group, batch: Waiting[]): Promise<void> => {
    eventSendsTotal.inc();
    eventsSentTotal.inc(batch.reduce((n, w) => n + w.events.length, 0));
    try {
      await send(
        g.accountId,
        g.environmentId,
        batch.flatMap((w) => w.events),
        g.traceParent,
      );
      for (const w of batch) w.resolve();
    } catch (err) {
      if (batch.length > 1 && err instanceof ValidationError) {
        // One send's events were refused: send each alone, so only that one fails.
        await Promise.all(
          batch.map((w) =>
            send(g.accountId, g.environmentId, w.events, g.traceParent).then(w.resolve, w.reject),
          ),
        );
        return;
      }
      for (const w of batch) w.reject(err);
    }
  };

  return {
    send(accountId, environmentId, events, traceParent) {
      if (events.length === 0) return Promise.resolve();
      const key = `${accountId}\n${environmentId}\n${traceParent}`;
      let g = groups.get(key);
      if (!g) {
        g = { accountId, environmentId, traceParent, waiting: [], inFlight: false };
        groups.set(key, g);
      }
      const group = g;
      const json = events.map((e) => JSON.stringify(e));
      const bytes = json.reduce((n, e) => n + e.length, 0);
      return new Promise<void>((resolve, reject) => {
        group.waiting.push({ events: json, bytes, resolve, reject });
        pump(key, group);
      });
    },
  };
}
