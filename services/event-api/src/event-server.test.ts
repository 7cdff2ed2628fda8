// EventService over real gRPC (port 0), with a recording sink in place of Kafka (the producer is
// tested against Kafka in producer.test.ts).

import { CallStream } from "@stepline/internal/call-stream";
import { systemClock } from "@stepline/internal/clock";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import type {
  SendEventsCall,
  SendEventsResult,
  SendEventsStreamRequest,
  SendEventsStreamResponse,
} from "@stepline/proto/stepline/eventapi/v1/event_service";
import { EventServiceClient } from "@stepline/proto/stepline/eventapi/v1/event_service";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { Message } from "kafkajs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { eventService } from "./event-server.js";

let server: GrpcServer;
let client: EventServiceClient;
let produced: Message[] = [];
let kafkaDown = false;
let n = 0;

beforeAll(async () => {
  const sink = {
    produce: async (messages: Message[]) => {
      if (kafkaDown) throw new UnavailableError("kafka is down");
      produced.push(...messages);
    },
  };
  const log = createLogger("event-api-test", "silent");
  server = await startGrpcServer("127.0.0.1:0", [eventService(sink, systemClock, () => `gen-${++n}`, log)]);
  client = createClient(EventServiceClient, `127.0.0.1:${server.port}`);
});

beforeEach(() => {
  produced = [];
  kafkaDown = false;
});

afterAll(async () => {
  client?.close();
  await server?.close();
});

const send = (eventsJson: string[]) =>
  callUnary(client.sendEvents.bind(client), {
    accountId: "acct",
    environmentId: "env",
    eventsJson,
    traceParent: "",
  });

describe("EventService.SendEvents", () => {
  it("produces Stepline's own events, inngest/ names included, keyed by account, keeping given ids", async () => {
    const res = await send([
      JSON.stringify({ name: "inngest/function.finished", id: "run1.finished", data: { run_id: "run1" } }),
      JSON.stringify({ name: "app/other", data: {} }),
    ]);
    expect(res.ids).toEqual(["run1.finished", "gen-1"]);
    const records = produced.map((m) => EventRecord.decode(m.value as Buffer));
    expect(produced.map((m) => m.key)).toEqual(["acct", "acct"]);
    expect(records.map((r) => [r.environmentId, r.eventId, JSON.parse(r.eventJson).name])).toEqual([
      ["env", "run1.finished", "inngest/function.finished"],
      ["env", "gen-1", "app/other"],
    ]);
  });

  it("rejects bad input naming the event and field, and produces nothing", async () => {
    await expect(send(["{nope"])).rejects.toThrow(/events_json\[0\] is not JSON/);
    await expect(send([JSON.stringify({ name: "" })])).rejects.toBeInstanceOf(ValidationError);
    await expect(send([])).rejects.toBeInstanceOf(ValidationError);
    await expect(
      callUnary(client.sendEvents.bind(client), {
        accountId: "",
        environmentId: "env",
        eventsJson: ["{}"],
        traceParent: "",
      }),
    ).rejects.toThrow(/account_id and environment_id are required/);
    expect(produced).toEqual([]);
  });

  it("answers UNAVAILABLE when Kafka does not acknowledge", async () => {
    kafkaDown = true;
    await expect(send([JSON.stringify({ name: "x" })])).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe("EventService.SendEventsStream", () => {
  const log = createLogger("event-api-test", "silent");
  const stream = () =>
    new CallStream<SendEventsCall, SendEventsResult, SendEventsStreamRequest, SendEventsStreamResponse>({
      open: () => client.sendEventsStream(),
      pack: (calls) => ({ calls }),
      unpack: (res) => res.results,
      deadlineMs: 5_000,
      sizeOf: () => 0,
      what: "the events",
      peer: "event-api",
      log,
    });
  const call = (s: ReturnType<typeof stream>, eventsJson: string[], accountId = "acct") =>
    s.call({ accountId, environmentId: "env", eventsJson, traceParent: "" });

  it("answers each send of a message by id: the good ones produced, a bad one refused alone", async () => {
    const s = stream();
    const [a, bad, b] = await Promise.allSettled([
      call(s, [JSON.stringify({ name: "inngest/function.finished", id: "r1.finished", data: {} })]),
      call(s, ["{nope"]),
      call(s, [JSON.stringify({ name: "inngest/function.finished", id: "r2.finished", data: {} })]),
    ]);
    expect(a).toMatchObject({ status: "fulfilled", value: { ids: ["r1.finished"] } });
    expect(b).toMatchObject({ status: "fulfilled", value: { ids: ["r2.finished"] } });
    expect(bad.status).toBe("rejected");
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(ValidationError);
    expect(String((bad as PromiseRejectedResult).reason)).toMatch(/events_json\[0\] is not JSON/);
    const ids = produced.map((m) => EventRecord.decode(m.value as Buffer).eventId);
    expect(ids.sort()).toEqual(["r1.finished", "r2.finished"]);
    await expect(call(s, ["{}"], "")).rejects.toThrow(/account_id and environment_id are required/);
    await s.close();
  });

  it("answers UNAVAILABLE when Kafka does not acknowledge", async () => {
    const s = stream();
    kafkaDown = true;
    await expect(call(s, [JSON.stringify({ name: "x" })])).rejects.toBeInstanceOf(UnavailableError);
    await s.close();
  });
});
