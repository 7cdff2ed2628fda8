// The dashboard's REST routes: filters and pages handed to history as asked, bad input answered
// 400 with what is wrong, environments chosen only among the caller's account's, and functions
// paused through the queue. History, runner and queue are in-memory stand-ins of their interfaces
// (their own suites test them against ClickHouse and Redis); tenancy is real Redis and events go
// to real Kafka.
import { NotFoundError } from "@stepline/internal/errors";
import { createKafka } from "@stepline/internal/kafka";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type {
  GetFunctionMetricsRequest,
  ListEventsRequest,
  ListRunsRequest,
  Run,
} from "@stepline/proto/stepline/history/v1/history_service";
import type { RegisteredFunction } from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunStatus, StepStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EventsTopic } from "./events-topic.fixture.js";
import { startEventsTopic } from "./events-topic.fixture.js";
import { buildHttpApp } from "./http.js";
import type { EventProducer } from "./producer.js";
import type { AppRegistry, FunctionControl, HistoryReader } from "./rest.js";
import type { Environment } from "./tenancy.js";
import { TenancyStore } from "./tenancy.js";
import { unusedApps, unusedRuns } from "./unused-deps.fixture.js";

const log = createLogger("event-api-test", "silent");
const tag = uniqueTag();
const topic = `test-eventapi-${tag}-v1.events`;

const run: Run = {
  runId: "01HRUN0000000000000000000A",
  accountId: "acct",
  environmentId: "",
  functionId: "shop-charge",
  eventId: "01HEVT0000000000000000000A",
  status: RunStatus.RUN_STATUS_FAILED,
  startedAtMs: Date.UTC(2026, 0, 1),
  endedAtMs: Date.UTC(2026, 0, 1, 0, 0, 2),
  outputJson: "",
  errorJson: '{"name":"Error","message":"card declined"}',
};
const charge: RegisteredFunction = {
  appId: "shop",
  version: "v1",
  config: {
    id: "shop-charge",
    name: "Charge",
    triggers: [
      { event: "shop/order.placed", expression: "", cron: "" },
      { event: "", expression: "", cron: "*/5 * * * *" },
    ],
    url: "http://127.0.0.1:3000/api/inngest?fnId=shop-charge&stepId=step",
    retries: 3,
    rawJson: '{"concurrency":[{"limit":5}],"id":"shop-charge","throttle":{"limit":10,"period":"1m"}}',
  },
};

// What the stand-ins were asked.
let runsAsked: ListRunsRequest[] = [];
let eventsAsked: ListEventsRequest[] = [];
let runEnvs: string[] = [];
let metricsAsked: GetFunctionMetricsRequest[] = [];
const paused = new Set<string>();

const history: HistoryReader = {
  getRun: async (environmentId) => {
    runEnvs.push(environmentId);
    return run;
  },
  listEventRuns: async () => [run],
  listEventSkips: async () => [],
  listRuns: async (req) => {
    runsAsked.push(req);
    return { runs: [{ ...run, environmentId: req.environmentId }], nextCursor: "next-page" };
  },
  listRunSteps: async () => [
    {
      stepId: "a1",
      name: "charge",
      status: StepStatus.STEP_STATUS_ERRORED,
      attempt: 0,
      startedAtMs: Date.UTC(2026, 0, 1, 0, 0, 1),
      atMs: Date.UTC(2026, 0, 1, 0, 0, 1, 500),
      outputJson: "",
      errorJson: '{"name":"Error","message":"card declined","stack":"Error: card declined\\n at charge"}',
    },
  ],
  listEvents: async (req) => {
    eventsAsked.push(req);
    return { events: [], nextCursor: "" };
  },
  getEvent: async (_env, eventId) => {
    if (eventId !== "evt-1") throw new NotFoundError(`event ${eventId} not found`);
    const eventJson = JSON.stringify({ name: "shop/order.placed", data: { total: 20 }, id: "evt-1", ts: 7 });
    return { eventId, name: "shop/order.placed", receivedAtMs: Date.UTC(2026, 0, 1), eventJson };
  },
  functionStats: async () => [
    { functionId: "shop-charge", runsHour: 4, failedHour: 1, runsDay: 40, failedDay: 2 },
  ],
  functionMetrics: async (req) => {
    metricsAsked.push(req);
    return [{ atMs: Date.UTC(2026, 0, 1), runs: 3, failed: 1, p50Ms: 120, p99Ms: 800 }];
  },
};
const registry: AppRegistry = {
  syncApp: async () => ({ modified: false }),
  listApps: async () => [
    {
      appId: "shop",
      url: "http://127.0.0.1:3000/api/inngest",
      sdk: "js:v4.24.0",
      framework: "express",
      functions: 1,
      lastSyncAtMs: Date.UTC(2026, 0, 1),
      lastSyncError: "",
    },
  ],
  listFunctions: async () => [charge],
  startRun: async () => {
    throw new Error("not in this test");
  },
};
const functions: FunctionControl = {
  pausedOf: async (_a, _e, ids) => new Set(ids.filter((id) => paused.has(id))),
  setPaused: async (_a, _e, id, p) => {
    if (p) paused.add(id);
    else paused.delete(id);
  },
};

let redis: Redis;
let producer: EventProducer;
let events: EventsTopic;
let app: FastifyInstance;
let dev: Environment;
let staging: Environment;
let otherAccountEnv: Environment;
let prodEnv: Environment;

beforeAll(async () => {
  redis = new Redis(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  const store = new TenancyStore(redis, { prefix: `test-v1-${tag}:{t}:` });
  dev = await store.ensureDevTenant();
  staging = await store.createEnvironment(dev.accountId, "staging");
  prodEnv = await store.createEnvironment((await store.createAccount("acme")).id, "production");
  otherAccountEnv = await store.createEnvironment((await store.createAccount("globex")).id, "production");
  const kafka = createKafka(requiredEnv("STEPLINE_TEST_KAFKA_BROKERS"), "event-api-test", log);
  events = await startEventsTopic(kafka, topic, log);
  producer = events.producer;
  app = buildHttpApp({
    log,
    tenants: store,
    devTenant: { accountId: dev.accountId, environmentId: dev.id },
    sink: producer,
    registry,
    history,
    runs: unusedRuns,
    functions,
    apps: unusedApps,
    historyRetentionDays: 14,
  });
});
afterAll(async () => {
  await app?.close();
  await events?.stop();
  const keys = await redis.keys(`test-v1-${tag}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
});
beforeEach(() => {
  runsAsked = [];
  eventsAsked = [];
  runEnvs = [];
  metricsAsked = [];
  paused.clear();
});

const get = (url: string, headers: Record<string, string> = {}) =>
  app.inject({ method: "GET", url, headers });

describe("REST /v1 for the dashboard", () => {
  it("lists runs with the filters, page size and cursor asked for, and hands back the next cursor", async () => {
    const res = await get(
      "/v1/runs?status=Failed,running&function_id=shop-charge&event_id=evt-1&started_after=2026-01-01T00:00:00Z&started_before=1767312000000&limit=10&cursor=abc",
    );
    expect(res.statusCode).toBe(200);
    expect(runsAsked).toEqual([
      {
        environmentId: dev.id,
        statuses: [RunStatus.RUN_STATUS_FAILED, RunStatus.RUN_STATUS_RUNNING],
        functionId: "shop-charge",
        eventId: "evt-1",
        startedAfterMs: Date.UTC(2026, 0, 1),
        startedBeforeMs: 1767312000000,
        limit: 10,
        cursor: "abc",
      },
    ]);
    expect(res.json()).toMatchObject({
      data: [{ run_id: run.runId, status: "Failed", error: { message: "card declined" } }],
      cursor: "next-page",
    });
    await get("/v1/runs");
    expect(runsAsked[1]).toMatchObject({ statuses: [], limit: 50, cursor: "" });
  });

  it.each([
    [
      "/v1/runs?status=Done",
      /status must be a comma-separated list of Running, Completed, Failed, Cancelled/,
    ],
    ["/v1/runs?limit=0", /limit must be an integer from 1 to 200/],
    ["/v1/runs?limit=abc", /limit must be an integer from 1 to 200/],
    ["/v1/runs?started_after=yesterday", /started_after must be an ISO-8601 time or epoch milliseconds/],
    ["/v1/events?limit=101", /limit must be an integer from 1 to 100/],
    ["/v1/runs/bad%20id/steps", /run id must be/],
  ])("answers 400 saying what is wrong: %s", async (url, message) => {
    const res = await get(url);
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(message);
  });

  it("lists events with the name and time filters, and gets one (404 naming an unknown one)", async () => {
    const list = await get("/v1/events?name=shop%2Forder.placed&received_after=5&limit=3");
    expect(list.json()).toMatchObject({ data: [], cursor: null });
    expect(eventsAsked).toEqual([
      {
        environmentId: dev.id,
        name: "shop/order.placed",
        receivedAfterMs: 5,
        receivedBeforeMs: 0,
        limit: 3,
        cursor: "",
      },
    ]);
    expect((await get("/v1/events/evt-1")).json()).toEqual({
      data: {
        id: "evt-1",
        name: "shop/order.placed",
        data: { total: 20 },
        user: null,
        ts: 7,
        v: null,
        received_at: "2026-01-01T00:00:00.000Z",
      },
    });
    const missing = await get("/v1/events/nope");
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error).toBe("event nope not found");
  });

  it("shows a run's steps with their start, end and error", async () => {
    const res = await get(`/v1/runs/${run.runId}/steps`);
    expect(res.json().data).toEqual([
      {
        step_id: "a1",
        name: "charge",
        status: "Errored",
        attempt: 0,
        started_at: "2026-01-01T00:00:01.000Z",
        ended_at: "2026-01-01T00:00:01.500Z",
        output: null,
        error: { name: "Error", message: "card declined", stack: "Error: card declined\n at charge" },
      },
    ]);
  });

  it("lists apps and functions (triggers, flow control, paused), and pauses and resumes a function", async () => {
    expect((await get("/v1/apps")).json().data).toEqual([
      {
        id: "shop",
        url: "http://127.0.0.1:3000/api/inngest",
        sdk: "js:v4.24.0",
        framework: "express",
        synced_at: "2026-01-01T00:00:00.000Z",
        functions: 1,
        error: null,
      },
    ]);
    const pause = await app.inject({ method: "POST", url: "/v1/functions/shop-charge/pause" });
    expect(pause.json()).toEqual({ data: { id: "shop-charge", paused: true } });
    expect((await get("/v1/functions")).json().data).toEqual([
      {
        id: "shop-charge",
        name: "Charge",
        app_id: "shop",
        triggers: [{ event: "shop/order.placed", expression: null }, { cron: "*/5 * * * *" }],
        retries: 3,
        flow: { concurrency: [{ limit: 5 }], throttle: { limit: 10, period: "1m" } },
        paused: true,
        stats: { hour: { runs: 4, failed: 1 }, day: { runs: 40, failed: 2 } },
      },
    ]);
    await app.inject({ method: "POST", url: "/v1/functions/shop-charge/resume" });
    expect(paused.has("shop-charge")).toBe(false);
    const unknown = await app.inject({ method: "POST", url: "/v1/functions/shop-nope/pause" });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error).toBe("function shop-nope is not synced in this environment");
  });

  it("gives a function's metrics per bucket, and refuses a range it cannot draw", async () => {
    const res = await get(
      "/v1/functions/shop-charge/metrics?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&bucket=900",
    );
    expect(metricsAsked).toEqual([
      {
        environmentId: dev.id,
        functionId: "shop-charge",
        fromMs: Date.UTC(2026, 0, 1),
        toMs: Date.UTC(2026, 0, 2),
        bucketSeconds: 900,
      },
    ]);
    expect(res.json()).toEqual({
      data: {
        bucket_seconds: 900,
        points: [{ t: "2026-01-01T00:00:00.000Z", runs: 3, failed: 1, p50_ms: 120, p99_ms: 800 }],
      },
    });
    const tooMany = await get("/v1/functions/shop-charge/metrics?from=1000&to=1767225600000&bucket=1");
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().error).toMatch(/more than 10,000 buckets/);
    const backwards = await get("/v1/functions/shop-charge/metrics?from=2000&to=1000");
    expect(backwards.json().error).toBe("to must be after from");
    expect((await get("/v1/functions/shop-nope/metrics")).statusCode).toBe(404);
  });

  it("acts on another environment of the same account when asked, and on no other account's", async () => {
    const envs = (await get("/v1/environments")).json();
    expect(envs.current).toBe(dev.id);
    expect(envs.data.map((e: { id: string }) => e.id).sort()).toEqual([dev.id, staging.id].sort());
    await get("/v1/runs", { "x-stepline-environment": staging.id });
    expect(runsAsked[0]?.environmentId).toBe(staging.id);
    // The SDK-shaped reads (one run, an event's runs) follow the header too.
    await get(`/v1/runs/${run.runId}`, { "x-stepline-environment": staging.id });
    expect(runEnvs).toEqual([staging.id]);
    const foreign = await get("/v1/runs", { "x-stepline-environment": otherAccountEnv.id });
    expect(foreign.statusCode).toBe(404);
    expect(foreign.json().error).toMatch(/is not one of this account's/);
    // A signing key fixes the environment: the header cannot widen it.
    await get("/v1/runs", {
      authorization: `Bearer ${prodEnv.signingKey}`,
      "x-stepline-environment": dev.id,
    });
    expect(runsAsked[1]?.environmentId).toBe(prodEnv.id);
  });

  it("sends events through POST /v1/events, and tells the dashboard the mode and retention", async () => {
    const sent = await app.inject({
      method: "POST",
      url: "/v1/events",
      headers: { "content-type": "application/json" },
      payload: { name: "shop/order.placed", data: { total: 20 } },
    });
    expect(sent.statusCode).toBe(200);
    expect(sent.json().ids).toHaveLength(1);
    expect(await events.count()).toBe(1);
    const bad = await app.inject({ method: "POST", url: "/v1/events", payload: { data: {} } });
    expect(bad.statusCode).toBe(400);
    expect((await get("/v1/settings")).json()).toEqual({
      data: { mode: "dev", history_retention_days: 14, signed_in_as: null },
    });
  });
});
