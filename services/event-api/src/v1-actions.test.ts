// The dashboard's actions: replay (one run, and every run a filter matches), bulk cancel, invoke and
// sync by URL. History, runner and executor are in-memory stand-ins of their interfaces (their own
// suites test them against ClickHouse and Redis); tenancy is real Redis, events go to real Kafka,
// and sync by URL calls a real HTTP server.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { egressPolicy } from "@stepline/internal/egress";
import { NotFoundError } from "@stepline/internal/errors";
import { createKafka } from "@stepline/internal/kafka";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { ListRunsRequest, Run } from "@stepline/proto/stepline/history/v1/history_service";
import type { StartRunRequest } from "@stepline/proto/stepline/runner/v1/runner_service";
import { EventRecord } from "@stepline/proto/stepline/stream/v1/event_record";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import type { Consumer } from "kafkajs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { appSyncer } from "./app-sync.js";
import type { EventsTopic } from "./events-topic.fixture.js";
import { startEventsTopic } from "./events-topic.fixture.js";
import { buildHttpApp } from "./http.js";
import type { EventProducer } from "./producer.js";
import type { AppRegistry, HistoryReader, RunControl } from "./rest.js";
import { TenancyStore } from "./tenancy.js";
import { unusedFunctions } from "./unused-deps.fixture.js";

const log = createLogger("event-api-test", "silent");
const tag = uniqueTag();
const topic = `test-eventapi-${tag}-actions.events`;

const runOf = (n: number, status: RunStatus, eventId = `evt-${n}`): Run => ({
  runId: `01HRUN00000000000000000${String(n).padStart(3, "0")}`,
  accountId: "acct",
  environmentId: "",
  functionId: "shop-charge",
  eventId,
  status,
  startedAtMs: Date.UTC(2026, 0, 1, 0, n),
  endedAtMs: 0,
  outputJson: "",
  errorJson: "",
});
// Newest first, as history lists them: three running, one failed, one whose event has expired.
let stored: Run[] = [];
let listed: ListRunsRequest[] = [];
let started: StartRunRequest[] = [];
let cancelled: string[] = [];
const lookups = new Map<string, number>();

const history: HistoryReader = {
  getRun: async (_env, runId) => {
    lookups.set(runId, (lookups.get(runId) ?? 0) + 1);
    // A replay's new run reaches history a little later: the third lookup finds it.
    const fresh = started.length > 0 && runId.startsWith("01HNEW") && (lookups.get(runId) ?? 0) >= 3;
    const run = fresh ? runOf(9, RunStatus.RUN_STATUS_RUNNING) : stored.find((r) => r.runId === runId);
    if (!run) throw new NotFoundError(`no run ${runId}`);
    return run;
  },
  listEventRuns: async () => [],
  listEventSkips: async () => [],
  listRuns: async (req) => {
    listed.push(req);
    const runs = stored.filter((r) => req.statuses.length === 0 || req.statuses.includes(r.status));
    return { runs, nextCursor: "" };
  },
  listRunSteps: async () => [],
  listEvents: async () => ({ events: [], nextCursor: "" }),
  getEvent: async (_env, eventId) => {
    if (eventId === "evt-expired") throw new NotFoundError(`event ${eventId} not found`);
    const eventJson = JSON.stringify({ name: "shop/order.placed", data: { n: eventId }, id: eventId, ts: 1 });
    return { eventId, name: "shop/order.placed", receivedAtMs: 1, eventJson };
  },
  functionStats: async () => [],
  functionMetrics: async () => [],
};
const registry: AppRegistry = {
  syncApp: async () => ({ modified: false }),
  listApps: async () => [],
  listFunctions: async () => [{ appId: "shop", version: "v", config: { id: "shop-charge" } as never }],
  startRun: async (req) => {
    started.push(req);
    return `01HNEW0000000000000000${String(started.length).padStart(4, "0")}`;
  },
};
const runs: RunControl = {
  cancelRun: async (_env, runId) => {
    cancelled.push(runId);
    return { cancelled: true, status: "cancelled" };
  },
  checkpoint: async () => undefined,
};

let redis: Redis;
let consumer: Consumer;
let producer: EventProducer;
let events: EventsTopic;
let app: FastifyInstance;
let appServer: Server;
let appUrl: string;
const received: EventRecord[] = [];

beforeAll(async () => {
  redis = new Redis(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  const store = new TenancyStore(redis, { prefix: `test-actions-${tag}:{t}:` });
  const dev = await store.ensureDevTenant();
  const kafka = createKafka(requiredEnv("STEPLINE_TEST_KAFKA_BROKERS"), "event-api-test", log);
  events = await startEventsTopic(kafka, topic, log);
  producer = events.producer;
  consumer = kafka.consumer({ groupId: `test-actions-${tag}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => void received.push(EventRecord.decode(message.value as Buffer)),
  });
  // An app's serve endpoint: PUT answers as the SDK does, or fails when the path says so.
  appServer = createServer((req, res) => {
    const failing = req.url?.includes("broken");
    res.writeHead(failing ? 500 : 200, { "content-type": "application/json" });
    res.end(
      JSON.stringify(
        failing
          ? { message: "could not reach the Inngest API" }
          : { message: "Successfully registered", modified: true },
      ),
    );
  });
  await new Promise<void>((resolve) => appServer.listen(0, "127.0.0.1", resolve));
  appUrl = `http://127.0.0.1:${(appServer.address() as AddressInfo).port}`;
  app = buildHttpApp({
    log,
    tenants: store,
    devTenant: { accountId: dev.accountId, environmentId: dev.id },
    sink: producer,
    registry,
    history,
    runs,
    functions: unusedFunctions,
    apps: appSyncer({
      egress: egressPolicy({
        dev: true,
        allow: "",
        who: "event-api",
        allowVariable: "STEPLINE_EVENT_API_EGRESS_ALLOW",
      }),
      timeoutMs: 2_000,
    }),
  });
});
afterAll(async () => {
  await app?.close();
  await consumer?.disconnect();
  await events?.stop();
  appServer?.close();
  const keys = await redis.keys(`test-actions-${tag}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
});
beforeEach(() => {
  stored = [
    runOf(5, RunStatus.RUN_STATUS_RUNNING),
    runOf(4, RunStatus.RUN_STATUS_RUNNING),
    runOf(3, RunStatus.RUN_STATUS_FAILED),
    runOf(2, RunStatus.RUN_STATUS_RUNNING, "evt-expired"),
  ];
  listed = [];
  started = [];
  cancelled = [];
});

const post = (url: string, payload?: object) =>
  app.inject({
    method: "POST",
    url,
    headers: { "content-type": "application/json" },
    payload: payload ?? {},
  });

describe("REST /v1 actions", () => {
  it("replays a run: a new run of its function with its trigger event", async () => {
    const res = await post(`/v1/runs/${stored[2]?.runId}/replay`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ data: { run_id: "01HNEW00000000000000000001", event_id: "evt-3" } });
    // It answered once history had the new run, so the dashboard can open it.
    expect(lookups.get("01HNEW00000000000000000001")).toBe(3);
    expect(started).toEqual([
      {
        environmentId: expect.any(String),
        functionId: "shop-charge",
        eventsJson: [expect.stringContaining('"id":"evt-3"')],
        requestId: expect.stringMatching(/^[0-9A-Z]{26}$/),
      },
    ]);
    const expired = await post(`/v1/runs/${stored[3]?.runId}/replay`);
    expect(expired.statusCode).toBe(409);
    expect(expired.json().error).toMatch(/its trigger event evt-expired is not in history/);
    expect((await post("/v1/runs/01HRUN0000000000000000X999/replay")).statusCode).toBe(404);
  });

  it("cancels every running run a filter matches, and only running ones", async () => {
    const res = await post("/v1/runs/cancel", { function_id: "shop-charge", status: "Running,Failed" });
    expect(res.json()).toEqual({ data: { matched: 3, cancelled: 3, more: false } });
    expect(cancelled.sort()).toEqual([stored[0], stored[1], stored[3]].map((r) => r?.runId).sort());
    expect(listed[0]).toMatchObject({ statuses: [RunStatus.RUN_STATUS_RUNNING], functionId: "shop-charge" });
    // A filter of ended runs only has nothing to cancel.
    expect((await post("/v1/runs/cancel", { status: "Failed" })).json().data).toMatchObject({ matched: 0 });
  });

  it("replays every run a filter matches, and says which could not be", async () => {
    const res = await post("/v1/runs/replay", { status: "Running" });
    expect(res.json()).toEqual({
      data: {
        matched: 3,
        replayed: 2,
        more: false,
        failed: [{ run_id: stored[3]?.runId, error: expect.stringMatching(/not in history/) }],
      },
    });
    expect((await post("/v1/runs/replay", { status: "Done" })).statusCode).toBe(400);
  });

  it("invokes a function: the event step.invoke sends, naming the function", async () => {
    const res = await post("/v1/functions/shop-charge/invoke", { data: { total: 7 } });
    expect(res.statusCode).toBe(200);
    const eventId = res.json().data.event_id;
    await expect.poll(() => received.find((r) => r.eventId === eventId), { timeout: 10_000 }).toBeTruthy();
    const event = JSON.parse(received.find((r) => r.eventId === eventId)?.eventJson ?? "{}");
    expect(event).toMatchObject({
      name: "inngest/function.invoked",
      data: { total: 7, _inngest: { fn_id: "shop-charge" } },
    });
    expect((await post("/v1/functions/shop-gone/invoke", { data: {} })).statusCode).toBe(404);
    const bad = await post("/v1/functions/shop-charge/invoke", { data: [1] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toBe("data must be a JSON object");
  });

  it("syncs an app by URL, and says why when it cannot", async () => {
    const ok = await post("/v1/apps/sync", { url: `${appUrl}/api/inngest` });
    expect(ok.json()).toEqual({
      data: { url: `${appUrl}/api/inngest`, modified: true, message: "Successfully registered" },
    });
    const broken = await post("/v1/apps/sync", { url: `${appUrl}/broken` });
    expect(broken.statusCode).toBe(502);
    expect(broken.json().error).toBe("the app answered the sync with 500: could not reach the Inngest API");
    const closed = await post("/v1/apps/sync", { url: "http://127.0.0.1:1/api/inngest" });
    expect(closed.statusCode).toBe(502);
    expect(closed.json().error).toMatch(/^could not reach http:\/\/127\.0\.0\.1:1: /);
    const metadata = await post("/v1/apps/sync", { url: "http://169.254.169.254/latest" });
    expect(metadata.statusCode).toBe(400);
    expect(metadata.json().error).toMatch(/egress policy: event-api does not call 169\.254\.169\.254/);
    expect((await post("/v1/apps/sync", { url: "ftp://x" })).statusCode).toBe(400);
    expect((await post("/v1/apps/sync", {})).json().error).toBe("url is required: the app's serve URL");
  });
});
