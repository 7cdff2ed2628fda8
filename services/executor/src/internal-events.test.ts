// The executor's sender of its own events over real gRPC (port 0), against an event-api of an
// older version: one that serves the unary SendEvents only, not SendEventsStream. (The stream
// itself is tested against event-api's server in services/event-api/src/event-server.test.ts.)

import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient, startGrpcServer, unary } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import type { SendEventsRequest } from "@stepline/proto/stepline/eventapi/v1/event_service";
import { EventServiceClient, EventServiceService } from "@stepline/proto/stepline/eventapi/v1/event_service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamSendEvents } from "./internal-events.js";

const log = createLogger("executor-test", "silent");
let server: GrpcServer;
let client: EventServiceClient;
const received: SendEventsRequest[] = [];

beforeAll(async () => {
  // grpc-js answers UNIMPLEMENTED for the methods an implementation leaves out.
  const implementation = {
    sendEvents: unary(log, async (req: SendEventsRequest) => {
      received.push(req);
      return { ids: req.eventsJson.map((_, i) => `id-${received.length}-${i}`) };
    }),
  };
  server = await startGrpcServer("127.0.0.1:0", [{ definition: EventServiceService, implementation }]);
  client = createClient(EventServiceClient, `127.0.0.1:${server.port}`);
});

afterAll(async () => {
  client?.close();
  await server?.close();
});

describe("the executor's events to an event-api without SendEventsStream", () => {
  it("are sent with unary SendEvents, the first ones included, and nothing is lost", async () => {
    const send = streamSendEvents(client, 5_000, log);
    // Two sends in one turn share the stream's first message, which the old event-api refuses.
    await Promise.all([
      send("acct-1", "env-1", ['{"name":"a/one"}'], ""),
      send("acct-1", "env-2", ['{"name":"a/two"}', '{"name":"a/three"}'], ""),
    ]);
    await send("acct-2", "env-3", ['{"name":"a/four"}'], "");
    expect(received.map((r) => [r.accountId, r.environmentId, r.eventsJson])).toEqual([
      ["acct-1", "env-1", ['{"name":"a/one"}']],
      ["acct-1", "env-2", ['{"name":"a/two"}', '{"name":"a/three"}']],
      ["acct-2", "env-3", ['{"name":"a/four"}']],
    ]);
    // An untraced run's events carry an unsampled parent, on the unary call as on the stream.
    expect(received.every((r) => r.traceParent.endsWith("-00"))).toBe(true);
    await send.close();
  });
});
