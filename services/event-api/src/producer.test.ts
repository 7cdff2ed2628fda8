import { MultipleErrors, ProtocolError } from "@platformatic/kafka";
import { createKafka } from "@stepline/internal/kafka";
import { createProducer } from "@stepline/internal/kafka-producer";
import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, freePort, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHttpApp } from "./http.js";
import { EventProducer, mapKafkaError } from "./producer.js";
import type { Environment } from "./tenancy.js";
import { TenancyStore } from "./tenancy.js";
import {
  unusedApps,
  unusedFunctions,
  unusedHistory,
  unusedRegistry,
  unusedRuns,
} from "./unused-deps.fixture.js";

const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");
const log = createLogger("event-api-test", "silent");
const tag = uniqueTag();
const keyPrefix = `test-producer-${tag}:{t}:`;

let redis: Redis;
let store: TenancyStore;
let env: Environment;
let kafka: Kafka;
let admin: Admin;
const topics: string[] = [];
const stops: Array<() => Promise<unknown>> = [];

function appWith(producer: EventProducer) {
  const app = buildHttpApp({
    log,
    tenants: store,
    devTenant: null,
    sink: producer,
    registry: unusedRegistry,
    history: unusedHistory,
    runs: unusedRuns,
    functions: unusedFunctions,
    apps: unusedApps,
  });
  stops.push(
    () => app.close(),
    () => producer.stop(),
  );
  return app;
}

const post = (app: ReturnType<typeof appWith>, body: unknown) =>
  app.inject({
    method: "POST",
    url: `/e/${env.eventKeys[0]}`,
    headers: { "content-type": "application/json" },
    payload: JSON.stringify(body),
  });

beforeAll(async () => {
  redis = new Redis(redisUrl);
  store = new TenancyStore(redis, { prefix: keyPrefix });
  env = await store.createEnvironment((await store.createAccount("acme")).id, "production");
  kafka = createKafka(brokers, "event-api-test", log);
  admin = kafka.admin();
  await admin.connect();
});

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("EventProducer when Kafka fails", () => {
  it("answers 503 with an error while Kafka is unreachable, and reports not ready", async () => {
    const port = await freePort();
    const unreachable = createProducer({
      brokers: `127.0.0.1:${port}`,
      clientId: "event-api-test",
      connectTimeoutMs: 200,
      retries: 2,
      retryFirstMs: 50,
    });
    const producer = new EventProducer(unreachable, {
      topic: "never",
      timeoutMs: 500,
      log,
      reconnectMs: 100,
    });
    producer.start();
    const app = appWith(producer);
    const res = await post(app, { name: "shop/order.placed" });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({ error: expect.stringMatching(/Kafka\) is unavailable/), status: 503 });
    expect(res.headers["retry-after"]).toBe("1");
    expect(producer.connected()).toBe(false);
  });

  it("refuses at once with 503 and Retry-After once the events waiting for Kafka pass the byte bound", async () => {
    // Kafka never acknowledges (the topic does not exist), so requests pile up behind the first.
    const client = createProducer({ brokers, clientId: "event-api-test", retries: 5, retryFirstMs: 300 });
    const producer = new EventProducer(client, {
      topic: `test-eventapi-${tag}-missing-2.events`,
      timeoutMs: 3_000,
      log,
      maxQueuedBytes: 100_000,
    });
    producer.start();
    await producer.whenConnected();
    const app = appWith(producer);
    const event = (n: number) => ({ name: "shop/bulk", data: { n, blob: "x".repeat(60_000) } });
    // One goes out (and is never acknowledged); the other waits behind it: 60 kB of the 100 kB.
    const first = post(app, event(1));
    const second = post(app, event(2));
    await waitFor("one request waiting behind the other", () => producer.waitingBytes() > 60_000);
    const started = Date.now();
    const third = await post(app, event(3)); // would make 120 kB wait
    expect(third.statusCode).toBe(503);
    expect(third.headers["retry-after"]).toBe("1");
    expect(third.json().error).toMatch(/too many events are waiting for the event stream/);
    expect(Date.now() - started).toBeLessThan(1_000);
    // The earlier two wait for Kafka and then time out, as any unacknowledged request does.
    expect((await first).statusCode).toBe(503);
    expect((await second).statusCode).toBe(503);
  });

  it("answers 503 when Kafka does not acknowledge within the produce timeout", async () => {
    // A topic that does not exist (auto-creation is off): the broker never takes the batch.
    const client = createProducer({ brokers, clientId: "event-api-test", retries: 3, retryFirstMs: 200 });
    const producer = new EventProducer(client, {
      topic: `test-eventapi-${tag}-missing.events`,
      timeoutMs: 300,
      log,
    });
    producer.start();
    await producer.whenConnected();
    const app = appWith(producer);
    const started = Date.now();
    const res = await post(app, { name: "shop/order.placed" });
    expect(res.statusCode).toBe(503);
    expect(res.json().error).toMatch(/did not acknowledge the events within 300 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("answers 413 when Kafka rejects the batch as too large, and keeps working afterwards", async () => {
    const topic = `test-eventapi-${tag}-small.events`;
    topics.push(topic);
    await createReadyTopics(admin, [
      { topic, numPartitions: 1, configEntries: [{ name: "max.message.bytes", value: "20000" }] },
    ]);
    const client = createProducer({ brokers, clientId: "event-api-test" });
    const producer = new EventProducer(client, { topic, timeoutMs: 10_000, log });
    producer.start();
    await producer.whenConnected();
    const app = appWith(producer);
    const big = await post(app, { name: "big", data: { blob: "x".repeat(50_000) } });
    expect(big.statusCode).toBe(413);
    expect(big.json().error).toMatch(/too large/);
    const small = await post(app, { name: "small" });
    expect(small.statusCode).toBe(200);
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets.reduce((n, p) => n + Number(p.high), 0)).toBe(1);
  });
});

describe("mapKafkaError", () => {
  it("maps a wrapped too-large error to TooLargeError and anything else to UnavailableError", () => {
    // As the client reports it: the broker's error inside the failed produce's errors.
    for (const id of ["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"]) {
      const tooLarge = new MultipleErrors("Producing messages failed.", [new ProtocolError(id)]);
      expect(mapKafkaError(tooLarge).name).toBe("TooLargeError");
    }
    expect(
      mapKafkaError(new MultipleErrors("failed", [new ProtocolError("NOT_LEADER_OR_FOLLOWER")])).name,
    ).toBe("UnavailableError");
    expect(mapKafkaError(new Error("ECONNREFUSED")).name).toBe("UnavailableError");
  });
});
