// /fn/register and the REST API, driven by the official SDK where it has a say. RunnerService and
// HistoryService are other services: here they are small in-process gRPC servers that record what
// they are asked. Tenancy is real Redis; events go to real Kafka.

import type { AddressInfo } from "node:net";
import { ConflictError, NotFoundError, UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient, startGrpcServer, unary } from "@stepline/internal/grpc";
import { createKafka } from "@stepline/internal/kafka";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { Run } from "@stepline/proto/stepline/history/v1/history_service";
import {
  HistoryServiceClient,
  HistoryServiceService,
} from "@stepline/proto/stepline/history/v1/history_service";
import type { SyncAppRequest } from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunnerServiceClient, RunnerServiceService } from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { FastifyInstance } from "fastify";
import { Inngest } from "inngest";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EventsTopic } from "./events-topic.fixture.js";
import { startEventsTopic } from "./events-topic.fixture.js";
import { buildHttpApp } from "./http.js";
import { hashSigningKey } from "./keys.js";
import type { EventProducer } from "./producer.js";
import { historyOverGrpc, registryOverGrpc } from "./rest.js";
import { quiet, syncWithSdk } from "./sdk-sync.fixture.js";
import type { Environment } from "./tenancy.js";
import { TenancyStore } from "./tenancy.js";
import { unusedApps, unusedFunctions } from "./unused-deps.fixture.js";

const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");
const log = createLogger("event-api-test", "silent");
const tag = uniqueTag();
const keyPrefix = `test-api-${tag}:{t}:`;
const topic = `test-eventapi-${tag}-api.events`;

// What the runner double was asked, and how it answers.
const synced: SyncAppRequest[] = [];
let runnerAnswer: (req: SyncAppRequest) => Promise<{ modified: boolean }>;
// The history double's runs, by `${environmentId}/${runId}`.
const runs = new Map<string, Run>();
// The executor double: the status of each cancellable run by `${environmentId}/${runId}`.
const live = new Map<string, string>();
const runControl = {
  async cancelRun(environmentId: string, runId: string) {
    const status = live.get(`${environmentId}/${runId}`);
    if (!status) throw new NotFoundError(`run ${runId} not found`);
    if (status !== "running" && status !== "cancelled") return { cancelled: false, status };
    live.set(`${environmentId}/${runId}`, "cancelled");
    return { cancelled: true, status: "cancelled" };
  },
  async checkpoint(environmentId: string, runId: string, queueItemId: string, stepsJson: string) {
    const status = live.get(`${environmentId}/${runId}`);
    if (!status) throw new NotFoundError(`run ${runId} not found`);
    if (status !== "running") throw new ConflictError(`run ${runId} has ended`);
    checkpoints.push({ environmentId, runId, queueItemId, steps: JSON.parse(stepsJson) });
  },
};
/** What the checkpoint endpoint handed on. */
const checkpoints: Array<{ environmentId: string; runId: string; queueItemId: string; steps: unknown }> = [];

let redis: Redis;
let store: TenancyStore;
let producer: EventProducer;
let events: EventsTopic;
let runner: GrpcServer;
let historySrv: GrpcServer;
let prod: { app: FastifyInstance; url: string };
let dev: { app: FastifyInstance; url: string };
let env: Environment;
let otherEnv: Environment;
let devEnv: Environment;

async function listen(devMode: boolean, runnerPort: number, historyPort: number) {
  const devTenant = devMode ? { accountId: devEnv.accountId, environmentId: devEnv.id } : null;
  const app = buildHttpApp({
    log,
    tenants: store,
    devTenant,
    sink: producer,
    registry: registryOverGrpc(createClient(RunnerServiceClient, `127.0.0.1:${runnerPort}`), 2_000),
    history: historyOverGrpc(createClient(HistoryServiceClient, `127.0.0.1:${historyPort}`), 2_000),
    runs: runControl,
    functions: unusedFunctions,
    apps: unusedApps,
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  redis = new Redis(redisUrl);
  store = new TenancyStore(redis, { prefix: keyPrefix });
  env = await store.createEnvironment((await store.createAccount("acme")).id, "production");
  otherEnv = await store.createEnvironment((await store.createAccount("globex")).id, "production");
  devEnv = await store.ensureDevTenant();
  const kafka = createKafka(brokers, "event-api-test", log);
  events = await startEventsTopic(kafka, topic, log);
  producer = events.producer;
  runner = await startGrpcServer("127.0.0.1:0", [
    {
      definition: RunnerServiceService,
      implementation: {
        syncApp: unary(log, (req: SyncAppRequest) => runnerAnswer(req)),
        listFunctions: unary(log, async () => ({ functions: [] })),
      },
    },
  ]);
  historySrv = await startGrpcServer("127.0.0.1:0", [
    {
      definition: HistoryServiceService,
      implementation: {
        getRun: unary(log, async (req: { environmentId: string; runId: string }) => {
          const run = runs.get(`${req.environmentId}/${req.runId}`);
          if (!run) throw new NotFoundError(`no run ${req.runId}`);
          return { run };
        }),
        listEventRuns: unary(log, async (req: { environmentId: string; eventId: string }) => ({
          runs: [...runs.values()].filter(
            (r) => r.environmentId === req.environmentId && r.eventId === req.eventId,
          ),
        })),
      },
    },
  ]);
  prod = await listen(false, runner.port, historySrv.port);
  dev = await listen(true, runner.port, historySrv.port);
});

beforeEach(() => {
  synced.length = 0;
  runnerAnswer = async (req) => {
    synced.push(req);
    return { modified: synced.length === 1 };
  };
});

afterAll(async () => {
  await prod?.app.close();
  await dev?.app.close();
  await runner?.close(100);
  await historySrv?.close(100);
  await events?.stop();
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("POST /fn/register", () => {
  it.each(["v4", "v3"] as const)(
    "syncs an app served by the SDK %s in production mode into the environment of its signing key",
    async (sdk) => {
      const res = await syncWithSdk({
        sdk,
        baseUrl: prod.url,
        signingKey: env.signingKey,
        id: `shop-${sdk}`,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.modified).toBe(true);
      expect(synced).toHaveLength(1);
      const req = synced[0] as SyncAppRequest;
      expect(req).toMatchObject({ accountId: env.accountId, environmentId: env.id, appId: `shop-${sdk}` });
      expect(req.url).toBe(`${res.origin}/api/inngest`);
      expect(req.sdk).toMatch(sdk === "v4" ? /^js:v4\./ : /^js:v3\./);
      expect(req.functions).toHaveLength(1);
      expect(req.functions[0]).toMatchObject({
        id: `shop-${sdk}-greet`,
        triggers: [{ event: "demo/greet", expression: "", cron: "" }],
        retries: 2,
      });
      expect(req.functions[0]?.url).toContain(`fnId=shop-${sdk}-greet&stepId=step`);
    },
  );

  it("syncs an app served by the SDK in dev mode (no key) into the default environment", async () => {
    const res = await syncWithSdk({ sdk: "v4", baseUrl: dev.url, id: "devapp" });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(synced[0]).toMatchObject({
      accountId: devEnv.accountId,
      environmentId: devEnv.id,
      appId: "devapp",
    });
  });

  it("refuses a sync without a known signing key in production, and the SDK relays the refusal", async () => {
    const body = JSON.stringify({ url: "http://x/api", appName: "a", functions: [] });
    const none = await prod.app.inject({ method: "POST", url: "/fn/register", payload: body });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toEqual({
      status: 401,
      error: expect.stringMatching(/Authorization: Bearer <signing key>/),
    });
    const wrong = await prod.app.inject({
      method: "POST",
      url: "/fn/register",
      headers: { authorization: `Bearer signkey-production-${"ab".repeat(32)}` },
      payload: body,
    });
    expect(wrong.statusCode).toBe(401);
    const viaSdk = await syncWithSdk({
      sdk: "v4",
      baseUrl: prod.url,
      signingKey: `signkey-production-${"cd".repeat(32)}`,
      id: "intruder",
    });
    expect(viaSdk.status).toBe(401);
    expect(viaSdk.body.message).toMatch(/signing key is not known/);
    expect(synced).toHaveLength(0);
  });

  it("answers an invalid config with 400 naming the function and field, without calling the runner", async () => {
    const res = await prod.app.inject({
      method: "POST",
      url: "/fn/register",
      headers: {
        authorization: `Bearer ${hashSigningKey(env.signingKey)}`,
        "content-type": "application/json",
      },
      payload: JSON.stringify({
        url: "http://127.0.0.1:1/api/inngest",
        appName: "shop",
        functions: [{ id: "shop-a", name: "a", triggers: [{ event: "" }], steps: {} }],
      }),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      status: 400,
      error: "function shop-a: triggers[0].event must be a non-empty string",
    });
    expect(synced).toHaveLength(0);
  });

  it("relays the runner's INVALID_ARGUMENT as 400, and the SDK passes the message to the PUT caller", async () => {
    runnerAnswer = async () => {
      throw new ValidationError("function shop-v4-greet: concurrency.limit must be at least 1");
    };
    const res = await syncWithSdk({
      sdk: "v4",
      baseUrl: prod.url,
      signingKey: env.signingKey,
      id: "shop-v4",
    });
    expect(res.status).toBe(400);
    expect(res.body.message).toBe("function shop-v4-greet: concurrency.limit must be at least 1");
  });

  it("answers 503 when the runner is unavailable", async () => {
    runnerAnswer = async () => {
      throw new UnavailableError("registry down");
    };
    const res = await syncWithSdk({
      sdk: "v4",
      baseUrl: prod.url,
      signingKey: env.signingKey,
      id: "shop-v4",
    });
    expect(res.status).toBe(503);
    expect(res.body.message).toMatch(/function registry \(runner\) is unavailable/);
  });
});

describe("the REST API", () => {
  const run = (over: Partial<Run>): Run => ({
    runId: "01HRUN0000000000000000000A",
    accountId: env.accountId,
    environmentId: env.id,
    functionId: "shop-greet",
    eventId: "evt-1",
    status: RunStatus.RUN_STATUS_COMPLETED,
    startedAtMs: Date.UTC(2024, 0, 2, 3, 4, 5, 6),
    endedAtMs: Date.UTC(2024, 0, 2, 3, 4, 6, 0),
    outputJson: '{"ok":true}',
    errorJson: "",
    ...over,
  });

  beforeAll(() => {
    runs.set(`${env.id}/01HRUN0000000000000000000A`, run({}));
    runs.set(
      `${env.id}/01HRUN0000000000000000000B`,
      run({
        runId: "01HRUN0000000000000000000B",
        functionId: "shop-fail",
        status: RunStatus.RUN_STATUS_FAILED,
        outputJson: "",
        errorJson: '{"name":"Error","message":"boom"}',
      }),
    );
    runs.set(
      `${env.id}/01HRUN0000000000000000000C`,
      run({
        runId: "01HRUN0000000000000000000C",
        eventId: "evt-2",
        status: RunStatus.RUN_STATUS_RUNNING,
        endedAtMs: 0,
        outputJson: "",
      }),
    );
    runs.set(
      `${devEnv.id}/01HRUN0000000000000000000D`,
      run({ runId: "01HRUN0000000000000000000D", environmentId: devEnv.id }),
    );
  });

  const get = (app: FastifyInstance, url: string, token?: string) =>
    app.inject({ method: "GET", url, headers: token ? { authorization: `Bearer ${token}` } : {} });

  it("shows one run with RFC 3339 times and parsed output, given the signing key or its hashed form", async () => {
    for (const token of [env.signingKey, hashSigningKey(env.signingKey) ?? ""]) {
      const res = await get(prod.app, "/v1/runs/01HRUN0000000000000000000A", token);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({
        data: {
          run_id: "01HRUN0000000000000000000A",
          event_id: "evt-1",
          function_id: "shop-greet",
          status: "Completed",
          run_started_at: "2024-01-02T03:04:05.006Z",
          ended_at: "2024-01-02T03:04:06.000Z",
          output: { ok: true },
        },
      });
    }
  });

  it("lists an event's runs with failed runs' parsed errors and running runs' null end", async () => {
    const res = await get(prod.app, "/v1/events/evt-1/runs", env.signingKey);
    expect(res.statusCode).toBe(200);
    const body = res.json() as { data: any[]; metadata: { fetched_at: string } };
    expect(body.data.map((r) => r.status)).toEqual(["Completed", "Failed"]);
    expect(body.data[1]).toMatchObject({ output: null, error: { name: "Error", message: "boom" } });
    expect(body.data[0]).not.toHaveProperty("error");
    expect(Number.isNaN(Date.parse(body.metadata.fetched_at))).toBe(false);
    const running = (await get(prod.app, "/v1/events/evt-2/runs", env.signingKey)).json() as { data: any[] };
    expect(running.data).toEqual([
      expect.objectContaining({ status: "Running", ended_at: null, output: null }),
    ]);
    const none = (await get(prod.app, "/v1/events/evt-unknown/runs", env.signingKey)).json() as {
      data: any[];
    };
    expect(none.data).toEqual([]);
  });

  it("requires a signing key in production and never shows another environment's runs", async () => {
    const anon = await get(prod.app, "/v1/runs/01HRUN0000000000000000000A");
    expect(anon.statusCode).toBe(401);
    expect(anon.json().error).toMatch(/unauthorized/);
    expect((await get(prod.app, "/v1/events/evt-1/runs")).statusCode).toBe(401);
    expect((await get(prod.app, "/v1/runs/01HRUN0000000000000000000A", "garbage")).statusCode).toBe(401);
    const other = await get(prod.app, "/v1/runs/01HRUN0000000000000000000A", otherEnv.signingKey);
    expect(other.statusCode).toBe(404);
    expect(other.json()).toEqual({ error: "run 01HRUN0000000000000000000A not found", status: 404 });
    const list = (await get(prod.app, "/v1/events/evt-1/runs", otherEnv.signingKey)).json() as {
      data: unknown[];
    };
    expect(list.data).toEqual([]);
  });

  it("reads the default environment in dev mode without a key", async () => {
    const res = await get(dev.app, "/v1/runs/01HRUN0000000000000000000D");
    expect(res.statusCode).toBe(200);
    expect((await get(dev.app, "/v1/runs/01HRUN0000000000000000000A")).statusCode).toBe(404);
  });

  it("refuses malformed ids with 400", async () => {
    const bad = await get(prod.app, `/v1/runs/${encodeURIComponent("a b")}`, env.signingKey);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatch(/run id must be/);
    const long = await get(prod.app, `/v1/events/${"x".repeat(300)}/runs`, env.signingKey);
    expect(long.statusCode).toBe(400);
    expect(long.json().error).toMatch(/event id is too long/);
    const huge = await get(prod.app, `/v1/runs/${"y".repeat(2000)}`, env.signingKey);
    expect(huge.statusCode).toBe(414);
    expect(huge.json()).toEqual({
      error: "a path segment is too long (at most 1024 characters)",
      status: 414,
    });
  });

  it("cancels a running run with DELETE /v1/runs/:id, only in the key's environment", async () => {
    live.set(`${env.id}/01HRUN0000000000000000000C`, "running");
    live.set(`${env.id}/01HRUN0000000000000000000A`, "completed");
    const del = (url: string, token?: string) =>
      prod.app.inject({ method: "DELETE", url, headers: token ? { authorization: `Bearer ${token}` } : {} });
    expect((await del("/v1/runs/01HRUN0000000000000000000C")).statusCode).toBe(401);
    const other = await del("/v1/runs/01HRUN0000000000000000000C", otherEnv.signingKey);
    expect(other.statusCode).toBe(404);
    const ok = await del("/v1/runs/01HRUN0000000000000000000C", env.signingKey);
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ data: { run_id: "01HRUN0000000000000000000C", status: "Cancelled" } });
    // Again: still cancelled (idempotent).
    expect((await del("/v1/runs/01HRUN0000000000000000000C", env.signingKey)).statusCode).toBe(200);
    const ended = await del("/v1/runs/01HRUN0000000000000000000A", env.signingKey);
    expect(ended.statusCode).toBe(409);
    expect(ended.json().error).toContain("already ended (completed)");
    expect((await del("/v1/runs/bad{id}", env.signingKey)).statusCode).toBe(400);
  });

  it("takes an SDK's checkpoint for a running run of the key's environment, and answers 409 once it ended", async () => {
    live.set(`${env.id}/01HRUN0000000000000000000D`, "running");
    live.set(`${env.id}/01HRUN0000000000000000000A`, "completed");
    const post = (runId: string, body: unknown, token?: string) =>
      prod.app.inject({
        method: "POST",
        url: `/v1/checkpoint/${runId}/async`,
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        payload: JSON.stringify(body),
      });
    const steps = [{ id: "a1", op: "StepRun", data: 1 }];
    const body = { run_id: "01HRUN0000000000000000000D", fn_id: "app-fn", qi_id: "q1", steps };
    expect((await post("01HRUN0000000000000000000D", body)).statusCode).toBe(401);
    expect((await post("01HRUN0000000000000000000D", body, otherEnv.signingKey)).statusCode).toBe(404);
    const ok = await post("01HRUN0000000000000000000D", body, env.signingKey);
    expect(ok.statusCode).toBe(200);
    expect(checkpoints.at(-1)).toEqual({
      environmentId: env.id,
      runId: "01HRUN0000000000000000000D",
      queueItemId: "q1",
      steps,
    });
    const stale = await post("01HRUN0000000000000000000A", { ...body, run_id: undefined }, env.signingKey);
    expect(stale.statusCode).toBe(409);
    const bad = await post("01HRUN0000000000000000000D", { steps: "nope" }, env.signingKey);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toContain("`steps`, a list of ops");
  });

  it("answers 503 when history is unavailable", async () => {
    const app = buildHttpApp({
      log,
      tenants: store,
      devTenant: null,
      sink: producer,
      registry: registryOverGrpc(createClient(RunnerServiceClient, "127.0.0.1:1"), 500),
      history: historyOverGrpc(createClient(HistoryServiceClient, "127.0.0.1:1"), 500),
      runs: runControl,
      functions: unusedFunctions,
      apps: unusedApps,
    });
    try {
      const res = await get(app, "/v1/runs/01HRUN0000000000000000000A", env.signingKey);
      expect(res.statusCode).toBe(503);
      expect(res.json().error).toMatch(/history service\) is unavailable/);
    } finally {
      await app.close();
    }
  });
});

describe("sending events with the SDK", () => {
  it("returns the ids of events the SDK sent with an event key, once they are on Kafka", async () => {
    const before = await events.count();
    const client = new Inngest({
      id: "sender",
      baseUrl: prod.url,
      eventKey: env.eventKeys[0],
      isDev: false,
      logger: quiet,
    } as any);
    const { ids } = await client.send([
      { name: "demo/greet", data: { who: "a" } },
      { name: "demo/greet", data: {}, id: "mine" },
    ]);
    expect(ids).toHaveLength(2);
    expect(ids[1]).toBe("mine");
    const after = await events.count();
    expect(after - before).toBe(2);
  });

  it("surfaces the event API's error message through the SDK", async () => {
    const client = new Inngest({
      id: "sender",
      baseUrl: prod.url,
      eventKey: "wrong-key",
      isDev: false,
      logger: quiet,
    } as any);
    await expect(client.send({ name: "demo/greet", data: {} })).rejects.toThrow(/event key not found/);
  });
});
