import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
// POST /e against real Kafka and Redis: what is accepted lands on the events topic, keyed by
// account, as EventRecords; what is rejected produces nothing.
import { createKafka } from "@stepline/internal/kafka";
import { createProducer } from "@stepline/internal/kafka-producer";
import { createLogger } from "@stepline/internal/log";
import { createReadyTopics, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildHttpApp } from "./http.js";
import { EventProducer } from "./producer.js";
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
const keyPrefix = `test-http-${tag}:{t}:`;

let redis: Redis;
let store: TenancyStore;
let kafka: Kafka;
let admin: Admin;
let env: Environment;
const topics: string[] = [];
const closers: Array<() => Promise<unknown>> = [];

/** A fresh topic, producer and app (prod or dev mode) for one test. */
async function setup(opts: { dev?: boolean; loopbackOnly?: boolean; dashboardDir?: string } = {}) {
  const topic = `test-eventapi-${tag}-${topics.length}.events`;
  topics.push(topic);
  await createReadyTopics(admin, [{ topic, numPartitions: 2 }]);
  const producer = new EventProducer(createProducer({ brokers, clientId: "event-api-test" }), {
    topic,
    timeoutMs: 10_000,
    log,
  });
  producer.start();
  await producer.whenConnected();
  const dev = opts.dev ? await store.ensureDevTenant() : null;
  const app = buildHttpApp({
    log,
    tenants: store,
    devTenant: dev ? { accountId: dev.accountId, environmentId: dev.id } : null,
    loopbackOnly: opts.loopbackOnly ?? false,
    sink: producer,
    registry: unusedRegistry,
    history: unusedHistory,
    runs: unusedRuns,
    functions: unusedFunctions,
    apps: unusedApps,
    dashboardDir: opts.dashboardDir ?? null,
  });
  closers.push(
    () => app.close(),
    () => producer.stop(),
  );
  return { app, topic, dev };
}

/** How many records the topic holds (sum of high watermarks). */
async function recordCount(topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((n, p) => n + Number(p.high), 0);
}

interface Consumed {
  key: string;
  partition: number;
  record: EventRecord;
}

/** Reads the topic from the beginning until `count` records arrived. */
async function consume(topic: string, count: number): Promise<Consumed[]> {
  const consumer = kafka.consumer({ groupId: `${topic}-reader-${uniqueTag()}`, maxWaitTimeInMs: 100 });
  const seen: Consumed[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        seen.push({
          key: message.key?.toString() ?? "",
          partition,
          record: EventRecord.decode(message.value ?? Buffer.alloc(0)),
        });
      },
    });
    await waitFor(`${count} records on ${topic}`, () => seen.length >= count, { timeoutMs: 20_000 });
    return seen;
  } finally {
    await consumer.disconnect();
  }
}

function post(app: FastifyInstance, key: string, body: unknown, contentType = "application/json") {
  return app.inject({
    method: "POST",
    url: `/e/${key}`,
    headers: { "content-type": contentType },
    payload: typeof body === "string" ? body : JSON.stringify(body),
  });
}

beforeAll(async () => {
  redis = new Redis(redisUrl);
  store = new TenancyStore(redis, { prefix: keyPrefix });
  kafka = createKafka(brokers, "event-api-test", log);
  admin = kafka.admin();
  await admin.connect();
  const account = await store.createAccount("acme");
  env = await store.createEnvironment(account.id, "production");
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("POST /e/:key", () => {
  it("acknowledges events only once they are on Kafka, keyed by account, as EventRecords", async () => {
    const { app, topic } = await setup();
    const before = Date.now();
    const res = await post(app, env.eventKeys[0] ?? "", [
      { name: "shop/order.placed", data: { n: 1 } },
      { name: "shop/order.paid", id: "pay-1", ts: 1234, data: { n: 2 }, v: "1", user: { id: "u1" } },
    ]);
    expect(res.statusCode).toBe(200);
    const body = res.json() as { ids: string[]; status: number };
    expect(body.status).toBe(200);
    expect(body.ids).toHaveLength(2);
    expect(body.ids[0]).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(body.ids[1]).toBe("pay-1");
    expect(await recordCount(topic)).toBe(2);

    const got = await consume(topic, 2);
    expect(got.map((g) => g.key)).toEqual([env.accountId, env.accountId]);
    expect(new Set(got.map((g) => g.partition)).size).toBe(1);
    const [first, second] = got.map((g) => g.record);
    expect(first).toMatchObject({ accountId: env.accountId, environmentId: env.id, eventId: body.ids[0] });
    expect(first?.receivedAtMs).toBeGreaterThanOrEqual(before);
    expect(JSON.parse(first?.eventJson ?? "")).toEqual({
      name: "shop/order.placed",
      data: { n: 1 },
      id: body.ids[0],
      ts: first?.receivedAtMs,
    });
    expect(JSON.parse(second?.eventJson ?? "")).toEqual({
      name: "shop/order.paid",
      data: { n: 2 },
      id: "pay-1",
      ts: 1234,
      v: "1",
      user: { id: "u1" },
    });
  });

  it("answers every bad request with a 4xx naming the problem and produces nothing to Kafka", async () => {
    const { app, topic } = await setup();
    const key = env.eventKeys[0] ?? "";
    const cases: Array<[string, () => ReturnType<typeof post>, number, RegExp]> = [
      ["unknown key", () => post(app, "not-a-key", { name: "a" }), 401, /event key not found/],
      ["malformed JSON", () => post(app, key, '{"name": "x", '), 400, /^invalid JSON/],
      ["empty body", () => post(app, key, ""), 400, /empty/],
      ["empty array", () => post(app, key, []), 400, /empty array/],
      ["missing name", () => post(app, key, { data: {} }), 400, /event\.name is required/],
      ["reserved name", () => post(app, key, [{ name: "inngest/function.failed" }]), 400, /reserved/],
      [
        "data array",
        () => post(app, key, [{ name: "a" }, { name: "b", data: [1] }]),
        400,
        /events\[1\]\.data/,
      ],
      [
        "data string",
        () => post(app, key, { name: "b", data: "x" }),
        400,
        /event\.data must be a JSON object/,
      ],
      [
        "a real form body (curl's default type is accepted only for JSON)",
        () => post(app, key, "name=a", "application/x-www-form-urlencoded"),
        400,
        /invalid JSON/i,
      ],
      ["xml content type", () => post(app, key, "<event/>", "application/xml"), 415, /content type/],
      [
        "oversized event",
        () => post(app, key, [{ name: "ok" }, { name: "big", data: { blob: "x".repeat(600 * 1024) } }]),
        413,
        /events\[1\] is \d+ bytes; the limit is 512 KiB/,
      ],
      [
        "oversized request",
        () =>
          post(
            app,
            key,
            Array.from({ length: 8 }, () => ({ name: "m", data: { b: "y".repeat(400 * 1024) } })),
          ),
        413,
        /3 MiB limit \(3145728 bytes\)/,
      ],
    ];
    for (const [what, send, status, message] of cases) {
      const res = await send();
      expect(res.statusCode, what).toBe(status);
      const body = res.json() as { error: string; status: number };
      expect(body.error, what).toMatch(message);
      expect(body.status, what).toBe(status);
    }
    expect(await recordCount(topic)).toBe(0);
    // The same producer still works after all that: one good request, one record.
    expect((await post(app, key, { name: "ok" })).statusCode).toBe(200);
    expect(await recordCount(topic)).toBe(1);
  });

  it("accepts text/plain and a missing content type, and the key in x-inngest-event-key on POST /e", async () => {
    const { app, topic } = await setup();
    const key = env.eventKeys[0] ?? "";
    expect((await post(app, key, { name: "a" }, "text/plain;charset=UTF-8")).statusCode).toBe(200);
    const bare = await app.inject({ method: "POST", url: `/e/${key}`, payload: Buffer.from('{"name":"b"}') });
    expect(bare.statusCode).toBe(200);
    const viaHeader = await app.inject({
      method: "POST",
      url: "/e",
      headers: { "content-type": "application/json", "x-inngest-event-key": key },
      payload: '{"name":"c"}',
    });
    expect(viaHeader.statusCode).toBe(200);
    expect(await recordCount(topic)).toBe(3);
  });

  it("puts every event of many concurrent requests on Kafka exactly once", async () => {
    const { app, topic } = await setup();
    const key = env.eventKeys[0] ?? "";
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        post(app, key, [
          { name: "c", id: `r${i}-a` },
          { name: "c", id: `r${i}-b` },
        ]),
      ),
    );
    expect(results.map((r) => r.statusCode)).toEqual(results.map(() => 200));
    const got = await consume(topic, 80);
    expect(got).toHaveLength(80);
    expect(new Set(got.map((g) => g.record.eventId)).size).toBe(80);
    // Within a request the events stay in order on the account's partition.
    const order = got.map((g) => g.record.eventId);
    for (let i = 0; i < 40; i++) expect(order.indexOf(`r${i}-a`)).toBeLessThan(order.indexOf(`r${i}-b`));
  });

  it("in dev mode accepts any event key into the default environment, and a known key into its own", async () => {
    const { app, topic, dev } = await setup({ dev: true });
    expect((await post(app, "anything-at-all", { name: "a", id: "dev-1" })).statusCode).toBe(200);
    expect((await post(app, env.eventKeys[0] ?? "", { name: "a", id: "known-1" })).statusCode).toBe(200);
    const got = await consume(topic, 2);
    const byId = Object.fromEntries(got.map((g) => [g.record.eventId, g]));
    expect(byId["dev-1"]?.record).toMatchObject({ accountId: dev?.accountId, environmentId: dev?.id });
    expect(byId["dev-1"]?.key).toBe(dev?.accountId);
    expect(byId["known-1"]?.record).toMatchObject({ accountId: env.accountId, environmentId: env.id });
  });
});

describe("browser requests in dev mode", () => {
  const send = (app: FastifyInstance, headers: Record<string, string>, id: string) =>
    app.inject({
      method: "POST",
      url: "/e/any-key",
      headers: { "content-type": "text/plain", ...headers },
      payload: JSON.stringify({ name: "a", id }),
    });

  it("refuses a cross-origin browser request, and takes same-origin ones and those without an Origin", async () => {
    const { app, topic } = await setup({ dev: true });
    const evil = await send(app, { origin: "https://evil.example", host: "localhost:8288" }, "evil-1");
    expect(evil.statusCode).toBe(403);
    expect(evil.json().error).toMatch(
      /^cross-origin browser requests are refused in dev mode \(Origin https:\/\/evil\.example/,
    );
    expect((await send(app, { origin: "null", host: "localhost:8288" }, "evil-2")).statusCode).toBe(403);
    const own = { origin: "http://localhost:8288", host: "localhost:8288" };
    expect((await send(app, own, "own-1")).statusCode).toBe(200);
    expect((await send(app, { host: "localhost:8288" }, "curl-1")).statusCode).toBe(200);
    const got = await consume(topic, 2);
    expect(got.map((g) => g.record.eventId).sort()).toEqual(["curl-1", "own-1"]);
    expect(await recordCount(topic)).toBe(2);
  });

  it("refuses a request naming a host that is not loopback when bound to loopback (DNS rebinding)", async () => {
    const { app } = await setup({ dev: true, loopbackOnly: true });
    const rebound = { origin: "http://rebound.example:8288", host: "rebound.example:8288" };
    const res = await send(app, rebound, "rebound-1");
    expect(res.statusCode).toBe(403);
    expect(res.json().error).toContain(
      'only requests to a loopback host (localhost or 127.0.0.1), not "rebound.example:8288"',
    );
    expect((await send(app, { host: "127.0.0.1:8288" }, "local-1")).statusCode).toBe(200);
  });

  it("leaves production mode to its keys: a browser may send events with an event key", async () => {
    const { app } = await setup();
    const res = await app.inject({
      method: "POST",
      url: `/e/${env.eventKeys[0]}`,
      headers: { "content-type": "application/json", origin: "https://shop.example", host: "events.example" },
      payload: JSON.stringify({ name: "a" }),
    });
    expect(res.statusCode).toBe(200);
  });
});

describe("other routes", () => {
  it("says how to build the dashboard when it is not built, and answers an unknown API path with JSON", async () => {
    const { app } = await setup();
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/text\/html/);
    expect(page.body).toContain("npm run build");
    const missing = await app.inject({ method: "GET", url: "/v1/nope", headers: { accept: "text/html" } });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ status: 404, error: expect.stringMatching(/no such endpoint/) });
  });

  it("serves the built dashboard: index.html for its pages, assets cached for good, JSON 404s for the rest", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "dashboard-"));
    mkdirSync(path.join(dir, "assets"));
    writeFileSync(path.join(dir, "index.html"), "<!doctype html><title>Stepline dashboard</title>");
    writeFileSync(path.join(dir, "assets", "index-abc123.js"), "console.log(1)");
    try {
      const { app } = await setup({ dashboardDir: dir });
      const html = { accept: "text/html,application/xhtml+xml" };
      for (const url of ["/", "/runs/01HRUN0000000000000000000A", "/events?name=a"]) {
        const page = await app.inject({ method: "GET", url, headers: html });
        expect(page.statusCode, url).toBe(200);
        expect(page.body, url).toContain("Stepline dashboard");
        expect(page.headers["cache-control"], url).toBe("no-cache");
      }
      const asset = await app.inject({ method: "GET", url: "/assets/index-abc123.js" });
      expect(asset.statusCode).toBe(200);
      expect(asset.headers["cache-control"]).toContain("immutable");
      // An API client asking for an unknown path, or a missing asset, gets a 404, not the page.
      for (const [url, headers] of [
        ["/runs/01HRUN0000000000000000000A", { accept: "application/json" }],
        ["/assets/missing.js", html],
        ["/v1/nope", html],
      ] as const) {
        const res = await app.inject({ method: "GET", url, headers });
        expect(res.statusCode, url).toBe(404);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
