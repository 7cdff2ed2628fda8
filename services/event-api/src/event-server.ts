// EventService gRPC handlers: events another service sends take the path of `POST /e/:key` (validation, ids, Kafka acknowledgement), with `inngest/` names
// allowed, as one unary call or as calls on a long-lived stream (SendEventsStream). Proto <->
// domain translation only.
import { serveCallStream } from "@stepline/internal/call-stream";
import type { Clock } from "@stepline/internal/clock";
import { ValidationError } from "@stepline/internal/errors";
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import { SpanKind, withSpan } from "@stepline/internal/telemetry";
import type {
  EventServiceServer,
  SendEventsCall,
  SendEventsRequest,
  SendEventsResult,
  SendEventsStreamRequest,
  SendEventsStreamResponse,
} from "@stepline/proto/stepline/eventapi/v1/event_service";
import { EventServiceService } from "@stepline/proto/stepline/eventapi/v1/event_service";
import { buildRecords, encodeRecord, prepareEvents } from "./events.js";
import type { EventSink } from "./producer.js";

/** The EventService definition and implementation, ready for startGrpcServer. */
export function eventService(sink: EventSink, clock: Clock, newId: () => string, log: Logger) {
  const l = log.child({ component: "event-service" });

  /** Validates and produces one send's events, all or none; their ids, once Kafka has them. */
  const send = async (req: SendEventsRequest): Promise<string[]> => {
    if (!req.accountId || !req.environmentId) {
      throw new ValidationError("account_id and environment_id are required");
    }
    const parsed = req.eventsJson.map((text, i) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new ValidationError(`events_json[${i}] is not JSON`);
      }
    });
    const receivedAt = clock.now();
    const events = prepareEvents(parsed, receivedAt, newId, true);
    const ref = { accountId: req.accountId, environmentId: req.environmentId };
    // Events a run sends (invoke, finished) join the run's trace; others start one of their own.
    const parent = req.traceParent || undefined;
    const attributes = { "stepline.environment_id": req.environmentId, "stepline.events": events.length };
    await withSpan("event.ingest", { parent, kind: SpanKind.SERVER, attributes }, async (span) => {
      const records = buildRecords(ref, events, receivedAt, span.traceParent);
      await sink.produce(records.map((r) => ({ key: r.accountId, value: encodeRecord(r) })));
    });
    return events.map((e) => e.id);
  };

  const implementation: EventServiceServer = {
    sendEvents: unary(l, async (req) => ({ ids: await send(req) })),
    sendEventsStream: (call) =>
      serveCallStream<SendEventsCall, SendEventsResult, SendEventsStreamRequest, SendEventsStreamResponse>(
        call,
        {
          calls: (req) => req.calls,
          pack: (results) => ({ results }),
          handle: async (c) => ({ ids: await send(c) }),
          empty: { ids: [] },
          log: l,
        },
      ),
  };
  return { definition: EventServiceService, implementation };
}
