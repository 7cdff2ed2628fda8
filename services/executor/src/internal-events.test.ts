// Stepline's own events, produced by the executor to a real Kafka: the records event-api would
// have made, sent in one request with the run's final history record, and each within the size
// an event may have.

import { createProducer } from "@stepline/internal/kafka-producer";
import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { Consumer } from "kafkajs";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HistoryProducer } from "./history.js";
import type { OwnEvent } from "./internal-events.js";
import { eventJsonWithin, kafkaEventSender } from "./internal-events.js";

const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
const prefix = `test.exec-events.${uniqueTag()}.`;
const topics = { history: `${prefix}history`, events: `${prefix}events` };
const kafka = new Kafka({ brokers: brokers.split(","), logLevel: logLevel.NOTHING });
const log = createLogger("executor-test", "silent");
const received: Array<{ topic: string; key: string; value: Buffer }> = [];
let consumer: Consumer;

beforeAll(async () => {
  const admin = kafka.admin();
  await admin.connect();
  // As scripts/infra/kafka.mjs makes them.
  await createReadyTopics(admin, [
    {
      topic: topics.history,
      numPartitions: 2,
      configEntries: [{ name: "max.message.bytes", value: "8388608" }],
    },
    {
      topic: topics.events,
      numPartitions: 4,
      configEntries: [{ name: "max.message.bytes", value: "4194304" }],
    },
  ]);
  await admin.disconnect();
  consumer = kafka.consumer({ groupId: `${prefix}reader` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topics.history, topics.events], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      if (message.value) received.push({ topic, key: String(message.key), value: message.value });
    },
  });
}, 60_000);

afterAll(async () => {
  await consumer?.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => undefined);
  await admin.disconnect();
});

const finished = (runId: string, data: Record<string, unknown>): OwnEvent => ({
  name: "inngest/function.finished",
  id: `${runId}.finished`,
  ts: 1_700_000_000_000,
  data: { function_id: "app-fn", run_id: runId, ...data },
});

describe("the executor's own events", () => {
  it("go to the events topic as event-api's records, in the same send as the run's final record", async () => {
    const sends: Array<Array<{ topic: string }>> = [];
    const client = createProducer({ brokers, clientId: "executor-test" });
    const realSend = client.send.bind(client);
    client.send = ((options: Parameters<typeof realSend>[0]) => {
      sends.push(options.messages.map((m) => ({ topic: m.topic })));
      return realSend(options);
    }) as typeof client.send;
    const producer = new HistoryProducer(
      client,
      { topic: topics.history, eventsTopic: topics.events, timeoutMs: 10_000, maxBacklogBytes: 1_000_000 },
      log,
    );
    await producer.start();
    const sender = kafkaEventSender((records) => producer.produceEvents(records), { now: () => 42 });
    const events = [
      finished("r1", { result: { ok: true } }),
      { name: "inngest/function.failed", id: "r1.failed", ts: 1, data: { run_id: "r1" } },
    ];
    const runRecord = {
      runId: "r1",
      accountId: "acct-1",
      environmentId: "env-1",
      functionId: "app-fn",
      eventId: "ev",
      status: RunStatus.RUN_STATUS_COMPLETED,
      startedAtMs: 1,
      endedAtMs: 2,
      outputJson: '{"ok":true}',
      errorJson: "",
      version: 2,
    };
    // As finalizeRun does: both in the same turn.
    await Promise.all([
      producer.produce([{ $case: "run", value: runRecord }]),
      sender.send("acct-1", "env-1", events, ""),
    ]);
    expect(sends.map((s) => s.map((m) => m.topic).sort())).toEqual([
      [topics.events, topics.events, topics.history],
    ]);

    const got = await waitFor(
      "the two events",
      () => {
        const e = received.filter((r) => r.topic === topics.events && r.key === "acct-1");
        return e.length >= 2 ? e : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const records = got.map((r) => EventRecord.decode(r.value));
    expect(records.map((r) => ({ ...r, eventJson: JSON.parse(r.eventJson) }))).toEqual(
      events.map((e) => ({
        accountId: "acct-1",
        environmentId: "env-1",
        eventId: e.id,
        receivedAtMs: 42,
        eventJson: e,
        name: e.name,
        // Tracing is off: no span, and no context for the runner to start a trace from.
        traceParent: "",
      })),
    );
    await producer.stop();
  }, 60_000);

  it("keep an end event within the size of an event, dropping what is too large to carry", () => {
    const max = 2_000;
    const small = finished("r2", { result: { n: 1 }, event: { name: "a", id: "e1", data: {} } });
    expect(eventJsonWithin(small, max)).toBe(JSON.stringify(small));

    // A batch's trigger events go first; the result stays when that is enough.
    const trigger = { name: "a", id: "e1", ts: 5, data: { n: 1 } };
    const batch = finished("r3", { result: 7, event: trigger, events: Array(50).fill(trigger) });
    const slim = JSON.parse(eventJsonWithin(batch, max));
    expect(slim.data).toMatchObject({ result: 7, event: trigger, events: [] });

    // Then the result (or the error), replaced by a note of its size.
    const big = finished("r4", { result: "x".repeat(5_000), event: trigger, events: [trigger] });
    const json = eventJsonWithin(big, max);
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(max);
    expect(JSON.parse(json).data).toMatchObject({
      run_id: "r4",
      event: trigger,
      result: { stepline_omitted: expect.stringContaining("(5002 bytes) is larger than an event may carry") },
    });
    const failed = finished("r5", { error: { name: "E", message: "y".repeat(5_000) }, event: trigger });
    expect(JSON.parse(eventJsonWithin(failed, max)).data.error).toEqual({
      name: "Error",
      message: expect.stringContaining("is larger than an event may carry"),
    });

    // Last, the trigger event itself, keeping its name and id.
    const huge = finished("r6", { result: 1, event: { ...trigger, data: { blob: "z".repeat(5_000) } } });
    const event = JSON.parse(eventJsonWithin(huge, max)).data.event;
    expect(event).toMatchObject({ name: "a", id: "e1", ts: 5 });
    expect(event.data.stepline_omitted).toContain("is larger than an event may carry");
  });
});
