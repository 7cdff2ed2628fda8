// The consumer against real Kafka and Redis, with an in-process ExecutorService double
// (executor-double.fixture.ts) that records the calls it gets and can be told to fail.

import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient } from "@stepline/internal/grpc";
import { newId } from "@stepline/internal/ids";
import { createKafka, groupName, topicNames } from "@stepline/internal/kafka";
import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv, waitFor } from "@stepline/internal/testing";
import type { Pause } from "@stepline/proto/stepline/executor/v1/executor_service";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { SkipRecord } from "@stepline/proto/stepline/stream/v1/history_record";
import { SkipReason } from "@stepline/proto/stepline/stream/v1/history_record";
import { Redis } from "ioredis";
import type { Admin, Kafka, Producer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventConsumer, SCHEDULE_MAX_BYTES } from "./consumer.js";
import { newExecutorDouble, startExecutorDouble } from "./executor-double.fixture.js";
import { idemKey } from "./keys.js";
import { grpcPauses } from "./pauses.js";
import { Registry } from "./registry.js";
import { grpcScheduler } from "./schedule-client.js";
import { validateSync } from "./validate.js";

const REDIS_URL = requiredEnv("STEPLINE_TEST_REDIS_URL");
const BROKERS = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
// Consumer group joins and rebalances take seconds on a busy machine.
const WAIT = { timeoutMs: 30_000 };

const log = createLogger("runner-test", process.env.STEPLINE_TEST_LOG_LEVEL ?? "silent");
const prefix = `runner-test.${newId().toLowerCase()}.`;
const topic = topicNames(prefix).events;
const groupId = groupName(prefix, "runner");
const [envA, envB, envC, envD] = [
  `test-a-${newId()}`,
  `test-b-${newId()}`,
  `test-c-${newId()}`,
  `test-d-${newId()}`,
];

const executor = newExecutorDouble();

let redis: Redis;
let kafka: Kafka;
let admin: Admin;
let producer: Producer;
let server: GrpcServer;
let client: ExecutorServiceClient;
let consumer: EventConsumer;
let registry: Registry;
/** What the consumer recorded as skipped, and the ids of events it buffered (debounce, batch). */
const skipped: SkipRecord[] = [];
const buffered: string[] = [];

function newConsumer(commitIntervalMs?: number): EventConsumer {
  return new EventConsumer({
    kafka,
    topic,
    groupId,
    redis,
    registry,
    schedule: grpcScheduler(client, 5_000, log).schedule,
    skips: async (records) => {
      skipped.push(...records);
    },
    buffers: {
      add: async (events) => {
        buffered.push(...events.map((e) => e.eventId));
      },
    },
    pauses: grpcPauses(client, 5_000, log),
    log,
    chunkSize: 100,
    retryMinMs: 50,
    retryMaxMs: 200,
    partitionConcurrency: 2,
    sessionTimeoutMs: 10_000,
    ...(commitIntervalMs ? { commitIntervalMs } : {}),
  });
}

/** The group's committed offset of a partition (-1 when none). */
async function committed(partition: number): Promise<number> {
  const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return Number(res?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
}

/** Produces an event to a chosen partition and returns its id, JSON and offset. */
async function produce(
  env: string,
  name: string,
  partition: number,
  eventId = newId(),
  data: object = { n: 1 },
) {
  const eventJson = JSON.stringify({ name, data, id: eventId, ts: Date.now() });
  const value = Buffer.from(
    EventRecord.encode({
      accountId: "acct1",
      environmentId: env,
      eventId,
      receivedAtMs: Date.now(),
      eventJson,
      traceParent: "",
      name,
    }).finish(),
  );
  const [meta] = await producer.send({ topic, acks: -1, messages: [{ key: "acct1", value, partition }] });
  return { eventId, eventJson, offset: Number(meta?.baseOffset) };
}

/** Successful runs recorded for an event id. */
const runsFor = (eventId: string, ok = true) =>
  executor.calls
    .filter((c) => c.ok === ok)
    .flatMap((c) => c.runs)
    .filter((r) => JSON.parse(r.eventsJson[0] ?? "{}").id === eventId);

function appSync(env: string, appId: string, fnId: string, event: string, rawJson = "") {
  return validateSync({
    accountId: "acct1",
    environmentId: env,
    appId,
    url: `http://127.0.0.1:3000/${appId}`,
    sdk: "js:v4.24.0",
    framework: "nodejs",
    functions: [
      {
        id: fnId,
        name: fnId,
        triggers: [{ event, expression: "", cron: "" }],
        url: `http://127.0.0.1:3000/${appId}?fnId=${fnId}&stepId=step`,
        retries: 3,
        rawJson,
      },
    ],
  });
}

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  kafka = createKafka(BROKERS, "runner-test", log);
  admin = kafka.admin();
  await admin.connect();
  await createReadyTopics(admin, [{ topic, numPartitions: 2 }]);
  producer = kafka.producer({ idempotent: true });
  await producer.connect();

  server = await startExecutorDouble(executor, log);
  client = createClient(ExecutorServiceClient, `127.0.0.1:${server.port}`);

  registry = new Registry(redis);
  await registry.syncApp(appSync(envA, "shop", "shop-on-hello", "test/hello"));
  await registry.syncApp(appSync(envB, "other", "other-on-hello", "test/hello"));

  consumer = newConsumer();
  consumer.start();
  await waitFor("the consumer to join its group", () => consumer.isJoined(), { timeoutMs: 60_000 });
}, 90_000);

afterAll(async () => {
  await consumer?.stop();
  await producer?.disconnect();
  await admin?.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin?.deleteGroups([groupId]).catch(() => undefined);
  await admin?.disconnect();
  client?.close();
  await server?.close();
  for (const env of [envA, envB, envC, envD]) {
    const keys = await redis.keys(`r:{${env}}:*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  redis?.disconnect();
}, 60_000);

describe("EventConsumer", () => {
  it("starts only the event's own environment's functions, with a complete RunSpec", async () => {
    const { eventId, eventJson, offset } = await produce(envA, "test/hello", 0);
    await waitFor("the offset to be committed", async () => (await committed(0)) > offset, WAIT);
    const runs = runsFor(eventId);
    expect(runs).toHaveLength(1);
    const fn = appSync(envA, "shop", "shop-on-hello", "test/hello").functions[0];
    expect(runs[0]).toEqual({
      runId: expect.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/),
      accountId: "acct1",
      environmentId: envA,
      appId: "shop",
      functionId: "shop-on-hello",
      functionVersion: fn?.version,
      url: "http://127.0.0.1:3000/shop?fnId=shop-on-hello&stepId=step",
      maxAttempts: 4,
      eventsJson: [eventJson],
      cancelOn: [],
      startTimeoutMs: 0,
      finishTimeoutMs: 0,
      flow: undefined,
      singleton: undefined,
      // The test's events carry no trace, so the run has none.
      traceParent: "",
    });
  }, 60_000);

  it("meets the functions synced after it last read an environment, whichever write checks its version", async () => {
    await registry.syncApp(appSync(envD, "early", "early-on-one", "d/one"));
    const first = await produce(envD, "d/one", 0);
    await waitFor("the first event's run", () => runsFor(first.eventId).length === 1, WAIT);
    // The runner now holds envD's functions. An event that copy matches nothing has its version read.
    await registry.syncApp(appSync(envD, "late", "late-on-two", "d/two"));
    const second = await produce(envD, "d/two", 0);
    await waitFor("the second event's run", () => runsFor(second.eventId).length === 1, WAIT);
    expect(runsFor(second.eventId)[0]?.functionId).toBe("late-on-two");
    // An event the copy matches in part: admit.lua finds the version moved, and it is matched again.
    await registry.syncApp(appSync(envD, "later", "later-on-one", "d/one"));
    const third = await produce(envD, "d/one", 0);
    await waitFor("the third event's runs", () => runsFor(third.eventId).length === 2, WAIT);
    expect(runsFor(third.eventId).map((r) => r.functionId)).toEqual(
      expect.arrayContaining(["early-on-one", "later-on-one"]),
    );
  }, 60_000);

  it("buffers the events of debounced functions instead of starting runs, and commits them", async () => {
    await registry.syncApp(
      appSync(envC, "deb", "deb-fn", "test/deb", JSON.stringify({ debounce: { period: "5s" } })),
    );
    const e = await produce(envC, "test/deb", 1);
    await waitFor("the offset to be committed", async () => (await committed(1)) > e.offset, WAIT);
    expect(buffered).toContain(e.eventId);
    expect(runsFor(e.eventId)).toEqual([]);
  }, 60_000);

  it("starts no run past a rate limit or for a repeated idempotency key, records why, and decides a redelivery the same way", async () => {
    await registry.syncApp(
      appSync(
        envC,
        "limited",
        "limited-fn",
        "test/limited",
        JSON.stringify({ rateLimit: { limit: 2, period: "1m" }, idempotency: "event.data.order" }),
      ),
    );
    const a = await produce(envC, "test/limited", 0, newId(), { order: 1 });
    const dup = await produce(envC, "test/limited", 0, newId(), { order: 1 });
    const b = await produce(envC, "test/limited", 0, newId(), { order: 2 });
    const c = await produce(envC, "test/limited", 0, newId(), { order: 3 });
    // The same event id again: the same decision, not a fresh one.
    const last = await produce(envC, "test/limited", 0, c.eventId, { order: 3 });
    await waitFor("the offsets to be committed", async () => (await committed(0)) > last.offset, WAIT);
    expect(runsFor(a.eventId)).toHaveLength(1);
    expect(runsFor(b.eventId)).toHaveLength(1);
    expect(runsFor(dup.eventId)).toEqual([]);
    expect(runsFor(c.eventId)).toEqual([]);
    const why = (eventId: string) => skipped.filter((s) => s.eventId === eventId);
    expect(why(dup.eventId)).toEqual([
      expect.objectContaining({
        environmentId: envC,
        functionId: "limited-fn",
        reason: SkipReason.SKIP_REASON_IDEMPOTENT,
        detail: `run ${runsFor(a.eventId)[0]?.runId} has the same idempotency key`,
      }),
    ]);
    const rate = why(c.eventId);
    expect(rate.length).toBeGreaterThanOrEqual(1);
    for (const r of rate) {
      expect(r).toMatchObject({
        reason: SkipReason.SKIP_REASON_RATE_LIMITED,
        detail: "rate limit of 2 runs per 60s reached",
      });
    }
  }, 60_000);

  it("resumes exactly the waits an event matches: its name, its lifetime and its `if` over event and async", async () => {
    const now = Date.now();
    const wait = (runId: string, over: Partial<Pause>): Pause => ({
      runId,
      opId: "op1",
      environmentId: envB,
      eventName: "shop/paid",
      expression: "async.data.order == event.data.order",
      triggerEventJson: JSON.stringify({ name: "shop/ordered", data: { order: 7 } }),
      createdAtMs: now - 60_000,
      timeoutAtMs: now + 60_000,
      cancel: false,
      ...over,
    });
    executor.pauses = [
      wait("run-match", {}),
      wait("run-other-order", { triggerEventJson: JSON.stringify({ data: { order: 8 } }) }),
      wait("run-any", { expression: "" }),
      wait("run-later", { createdAtMs: now + 30_000 }),
      wait("run-expired", { timeoutAtMs: now - 30_000 }),
      wait("run-bad-cel", { expression: "async.data.order ==" }),
    ];
    const { eventId, eventJson, offset } = await produce(envB, "shop/paid", 0, newId(), { order: 7 });
    await waitFor("the offset to be committed", async () => (await committed(0)) > offset, WAIT);
    const resumed = executor.resumes.flat().filter((r) => r.eventId === eventId);
    expect(resumed.map((r) => r.runId).sort()).toEqual(["run-any", "run-match"]);
    expect(resumed[0]).toMatchObject({ opId: "op1", environmentId: envB, eventName: "shop/paid", eventJson });
    executor.pauses = [];
  }, 60_000);

  it("commits events that start no function without calling the executor", async () => {
    const callsBefore = executor.calls.length;
    const { offset } = await produce(envA, "test/nobody-listens", 1);
    await waitFor("the offset to be committed", async () => (await committed(1)) > offset, WAIT);
    expect(executor.calls.length).toBe(callsBefore);
  }, 60_000);

  it("gives the same event delivered twice one run id", async () => {
    const eventId = newId();
    await produce(envA, "test/hello", 0, eventId);
    const { offset } = await produce(envA, "test/hello", 0, eventId);
    await waitFor("both offsets to be committed", async () => (await committed(0)) > offset, WAIT);
    const runIds = new Set(runsFor(eventId).map((r) => r.runId));
    expect(runIds.size).toBe(1);
    expect(await redis.get(idemKey(envA, "shop-on-hello", eventId))).toBe([...runIds][0]);
  }, 60_000);

  it("does not commit while ScheduleRuns fails, and retries the same runs until it succeeds", async () => {
    executor.failing = true;
    const before = await committed(1);
    const { eventId, offset } = await produce(envA, "test/hello", 1);
    await waitFor(
      "two failed attempts with the event's run",
      () => runsFor(eventId, false).length >= 2,
      WAIT,
    );
    expect(await committed(1)).toBe(before);
    expect(before).toBeLessThanOrEqual(offset);

    executor.failing = false;
    await waitFor("the offset to be committed", async () => (await committed(1)) > offset, WAIT);
    const failedIds = new Set(runsFor(eventId, false).map((r) => r.runId));
    const succeeded = runsFor(eventId);
    expect(succeeded).toHaveLength(1);
    expect(failedIds).toEqual(new Set([succeeded[0]?.runId]));
  }, 60_000);

  it("commits handled offsets on its interval rather than after every batch, and at stop", async () => {
    await consumer.stop();
    consumer = newConsumer(3_600_000);
    consumer.start();
    await waitFor("the consumer to join its group", () => consumer.isJoined(), WAIT);
    const before = await committed(1);
    const events: Awaited<ReturnType<typeof produce>>[] = [];
    for (let i = 0; i < 3; i++) events.push(await produce(envA, "test/hello", 1));
    const last = events[2];
    if (!last) throw new Error("no event");
    await waitFor("the three runs", () => events.every((e) => runsFor(e.eventId).length === 1), WAIT);
    // Several batches handled, none committed: the interval (an hour) has not come round.
    expect(await committed(1)).toBe(before);
    await consumer.stop();
    expect(await committed(1)).toBe(last.offset + 1);
    consumer = newConsumer();
    consumer.start();
    await waitFor("the consumer to join its group", () => consumer.isJoined(), WAIT);
  }, 90_000);

  it("redelivers to a new consumer what a stopped one could not schedule, under the same run id", async () => {
    executor.failing = true;
    const before = await committed(0);
    const { eventId, offset } = await produce(envA, "test/hello", 0);
    await waitFor("a failed attempt with the event's run", () => runsFor(eventId, false).length >= 1, WAIT);
    await consumer.stop();
    expect(await committed(0)).toBe(before);

    executor.failing = false;
    consumer = newConsumer();
    consumer.start();
    await waitFor(
      "the offset to be committed by the new consumer",
      async () => (await committed(0)) > offset,
      { timeoutMs: 60_000 },
    );
    const failedIds = new Set(runsFor(eventId, false).map((r) => r.runId));
    const succeeded = runsFor(eventId);
    expect(succeeded).toHaveLength(1);
    expect(failedIds).toEqual(new Set([succeeded[0]?.runId]));
  }, 90_000);

  it("splits the runs of a large event fanned out to many functions into calls that fit a gRPC message", async () => {
    // 40 functions × a 450 KB event is ~18 MB of events_json: more than one 16 MiB gRPC message.
    const functions = Array.from({ length: 40 }, (_, i) => ({
      id: `fan-${i}`,
      name: `fan-${i}`,
      triggers: [{ event: "test/big", expression: "", cron: "" }],
      url: `http://127.0.0.1:3000/fan?fnId=fan-${i}&stepId=step`,
      retries: 0,
      rawJson: "",
    }));
    await registry.syncApp(
      validateSync({
        accountId: "acct1",
        environmentId: envC,
        appId: "fan",
        url: "http://127.0.0.1:3000/fan",
        sdk: "js:v4.24.0",
        framework: "nodejs",
        functions,
      }),
    );
    const before = executor.calls.length;
    const { eventId, offset } = await produce(envC, "test/big", 1, newId(), { blob: "x".repeat(450_000) });
    await waitFor("the offset to be committed", async () => (await committed(1)) > offset, {
      timeoutMs: 45_000,
    });
    expect(new Set(runsFor(eventId).map((r) => r.functionId)).size).toBe(40);
    for (const call of executor.calls.slice(before)) {
      const bytes = call.runs.reduce((n, r) => n + r.eventsJson.reduce((m, e) => m + e.length, 0), 0);
      expect(bytes).toBeLessThanOrEqual(SCHEDULE_MAX_BYTES);
    }
  }, 60_000);

  it("sets an event the executor refuses aside, records why, and starts the rest of its chunk", async () => {
    const before = await committed(0);
    const [good1, bad, good2] = [{ n: 1 }, { poison: true }, { n: 2 }];
    const first = await produce(envA, "test/hello", 0, newId(), good1);
    const poison = await produce(envA, "test/hello", 0, newId(), bad);
    const last = await produce(envA, "test/hello", 0, newId(), good2);
    expect(before).toBeLessThanOrEqual(first.offset);
    await waitFor(
      "the offsets past the poison event to be committed",
      async () => (await committed(0)) > last.offset,
      WAIT,
    );
    expect(runsFor(first.eventId)).toHaveLength(1);
    expect(runsFor(last.eventId)).toHaveLength(1);
    expect(runsFor(poison.eventId)).toHaveLength(0);
    expect(skipped.filter((s) => s.eventId === poison.eventId)).toEqual([
      expect.objectContaining({
        environmentId: envA,
        functionId: "shop-on-hello",
        reason: SkipReason.SKIP_REASON_REFUSED,
        detail: "refused by the executor: runs[0]: the executor cannot take this run",
      }),
    ]);
  }, 60_000);

  it("skips an undecodable record instead of blocking its partition", async () => {
    const [meta] = await producer.send({
      topic,
      acks: -1,
      messages: [{ key: "acct1", value: Buffer.from("not a protobuf \xff\xff"), partition: 1 }],
    });
    const { eventId, offset } = await produce(envA, "test/hello", 1);
    expect(Number(meta?.baseOffset)).toBeLessThan(offset);
    await waitFor("the offset to be committed", async () => (await committed(1)) > offset, WAIT);
    expect(runsFor(eventId)).toHaveLength(1);
  }, 60_000);
});
