import { NotFoundError, ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { callUnary, createClient, startGrpcServer } from "@stepline/internal/grpc";
import { newId } from "@stepline/internal/ids";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv } from "@stepline/internal/testing";
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ConcurrencyScope, ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { FunctionConfig } from "@stepline/proto/stepline/runner/v1/runner_service";
import { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Buffers } from "./buffers.js";
import { Crons } from "./crons.js";
import { Registry } from "./registry.js";
import { Replays } from "./replays.js";
import { runnerService } from "./server.js";

const REDIS_URL = requiredEnv("STEPLINE_TEST_REDIS_URL");

let redis: Redis;
let server: GrpcServer;
let client: RunnerServiceClient;
const env = `test-${newId()}`;
/** What the queue and executor doubles were given, and the runner's clock. */
const enqueued: NewItem[] = [];
const scheduled: RunSpec[] = [];
let now = Date.UTC(2026, 0, 1, 12, 0, 0);

beforeAll(async () => {
  redis = new Redis(REDIS_URL);
  const log = createLogger("runner-test", "silent");
  const registry = new Registry(redis);
  const crons = new Crons({
    registry,
    redis,
    enqueue: async (items) => void enqueued.push(...items),
    schedule: async (runs) => void scheduled.push(...runs),
    clock: { now: () => now },
    log,
  });
  const buffers = new Buffers({
    redis,
    registry,
    enqueue: async (items) => void enqueued.push(...items),
    schedule: async (runs) => void scheduled.push(...runs),
    clock: { now: () => now },
    log,
  });
  const replays = new Replays({ redis, registry, schedule: async (runs) => void scheduled.push(...runs) });
  server = await startGrpcServer("127.0.0.1:0", [runnerService(log, registry, crons, buffers, replays)]);
  client = createClient(RunnerServiceClient, `127.0.0.1:${server.port}`);
});

afterAll(async () => {
  client?.close();
  await server?.close();
  const keys = await redis.keys(`r:{${env}}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const fn = (over: Partial<FunctionConfig> = {}): FunctionConfig => ({
  id: "shop-checkout",
  name: "checkout",
  triggers: [
    { event: "shop/order.*", expression: "event.data.total > 0", cron: "" },
    { event: "", expression: "", cron: "0 5 * * *" },
  ],
  url: "http://127.0.0.1:3000/api/inngest?fnId=shop-checkout&stepId=step",
  retries: 3,
  rawJson: '{"id":"shop-checkout","concurrency":2}',
  ...over,
});

const syncApp = (functions: FunctionConfig[]) =>
  callUnary(client.syncApp.bind(client), {
    accountId: "acct1",
    environmentId: env,
    appId: "shop",
    url: "http://127.0.0.1:3000/api/inngest",
    sdk: "js:v4.24.0",
    framework: "nodejs",
    functions,
  });

describe("RunnerService over gRPC", () => {
  it("syncs an app and lists its functions with their config and version", async () => {
    expect(await syncApp([fn()])).toEqual({ modified: true });
    expect(await syncApp([fn()])).toEqual({ modified: false });
    const { functions } = await callUnary(client.listFunctions.bind(client), { environmentId: env });
    expect(functions).toHaveLength(1);
    expect(functions[0]?.appId).toBe("shop");
    expect(functions[0]?.version).toMatch(/^[0-9a-f]{16}$/);
    expect(functions[0]?.config).toEqual(fn({ rawJson: '{"concurrency":2,"id":"shop-checkout"}' }));
  });

  it("answers INVALID_ARGUMENT naming the function and field of an invalid config", async () => {
    const err = await syncApp([fn({ retries: 99 })]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toBe("function shop-checkout: retries must be an integer from 0 to 20");
  });

  it("lists apps with their function count and last sync, and keeps a refused sync's error", async () => {
    const listApps = async () => (await callUnary(client.listApps.bind(client), { environmentId: env })).apps;
    await syncApp([fn(), fn({ id: "shop-refund", name: "refund" })]);
    const [taken] = await listApps();
    expect(taken).toEqual({
      appId: "shop",
      url: "http://127.0.0.1:3000/api/inngest",
      sdk: "js:v4.24.0",
      framework: "nodejs",
      functions: 2,
      lastSyncAtMs: expect.any(Number),
      lastSyncError: "",
    });
    expect(taken?.lastSyncAtMs).toBeGreaterThan(0);

    await syncApp([fn({ retries: 99 })]).catch(() => undefined);
    const [refused] = await listApps();
    // The refused sync changed nothing but its note: the app keeps its two functions.
    expect(refused).toMatchObject({ appId: "shop", functions: 2 });
    expect(refused?.lastSyncError).toBe("function shop-checkout: retries must be an integer from 0 to 20");

    await syncApp([fn()]);
    expect(await listApps()).toMatchObject([{ functions: 1, lastSyncError: "" }]);
  });

  it("starts a run of a function with given events, once per request id (a replay)", async () => {
    await syncApp([fn()]);
    const event = JSON.stringify({
      name: "shop/order.placed",
      data: { total: 5 },
      id: "evt-replayed",
      ts: 1,
    });
    const req = { environmentId: env, functionId: "shop-checkout", eventsJson: [event], requestId: newId() };
    const before = scheduled.length;
    const { runId } = await callUnary(client.startRun.bind(client), req);
    expect(runId).toMatch(/^[0-9A-Z]{26}$/);
    expect(scheduled.slice(before)).toMatchObject([
      { runId, functionId: "shop-checkout", eventsJson: [event] },
    ]);
    // The same request again answers the same run.
    expect((await callUnary(client.startRun.bind(client), req)).runId).toBe(runId);
    // Another request replays it again: a new run.
    const again = await callUnary(client.startRun.bind(client), { ...req, requestId: newId() });
    expect(again.runId).not.toBe(runId);

    const refused = async (over: object) =>
      (await callUnary(client.startRun.bind(client), { ...req, requestId: newId(), ...over }).catch(
        (e) => e,
      )) as Error;
    expect(await refused({ functionId: "shop-gone" })).toBeInstanceOf(NotFoundError);
    expect((await refused({ eventsJson: [] })).message).toBe("a run needs 1 to 1000 events");
    expect((await refused({ eventsJson: ["[1]"] })).message).toBe("events_json[0] must be an event object");
    expect((await refused({ requestId: "" })).message).toMatch(/request_id must be/);
  });

  it("answers INVALID_ARGUMENT for a malformed environment id in ListFunctions", async () => {
    const err = await callUnary(client.listFunctions.bind(client), { environmentId: "" }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
  });
});

describe("cron triggers", () => {
  const cronFn = (cron: string) =>
    fn({ id: "shop-nightly", triggers: [{ event: "", expression: "", cron }], rawJson: "" });
  const fire = (cron: string, tickMs: number) =>
    callUnary(client.fireCron.bind(client), { environmentId: env, functionId: "shop-nightly", cron, tickMs });

  it("arms a cron at every sync: its next tick is a queue item with a deterministic id", async () => {
    enqueued.length = 0;
    now = Date.UTC(2026, 0, 1, 12, 0, 0);
    await syncApp([fn(), cronFn("TZ=Europe/Paris 0 5 * * *")]);
    await syncApp([fn(), cronFn("TZ=Europe/Paris 0 5 * * *")]);
    const ticks = enqueued.filter((i) => i.functionId === "shop-nightly");
    expect(ticks).toHaveLength(2);
    expect(ticks[0]).toMatchObject({
      accountId: "acct1",
      environmentId: env,
      kind: ItemKind.ITEM_KIND_CRON,
      runAtMs: Date.UTC(2026, 0, 2, 4, 0, 0),
    });
    expect(ticks[1]?.id).toBe(ticks[0]?.id);
  });

  it("starts one run per tick with an inngest/scheduled.timer event, and names the next tick", async () => {
    await syncApp([cronFn("*/10 * * * * *")]);
    scheduled.length = 0;
    now = Date.UTC(2026, 0, 1, 12, 0, 0, 50);
    const tick = Date.UTC(2026, 0, 1, 12, 0, 0);
    const first = await fire("*/10 * * * * *", tick);
    const again = await fire("*/10 * * * * *", tick);
    expect(first.current).toBe(true);
    expect(again.runId).toBe(first.runId);
    expect(first.next).toMatchObject({ kind: ItemKind.ITEM_KIND_CRON, runAtMs: tick + 10_000 });
    expect(scheduled.map((r) => r.runId)).toEqual([first.runId, first.runId]);
    const event = JSON.parse(scheduled[0]?.eventsJson[0] ?? "{}");
    expect(event).toMatchObject({
      name: "inngest/scheduled.timer",
      ts: tick,
      data: { cron: "*/10 * * * * *" },
    });
    expect(scheduled[0]).toMatchObject({ functionId: "shop-nightly", accountId: "acct1", maxAttempts: 4 });
  });

  it("ends a chain whose cron a re-sync changed or removed, starting nothing", async () => {
    await syncApp([cronFn("*/10 * * * * *")]);
    await syncApp([cronFn("*/20 * * * * *")]);
    scheduled.length = 0;
    const stale = await fire("*/10 * * * * *", Date.UTC(2026, 0, 1, 12, 0, 10));
    expect(stale).toEqual({ current: false, nextTickMs: 0, runId: "", next: undefined });
    await syncApp([fn()]);
    expect((await fire("*/20 * * * * *", Date.UTC(2026, 0, 1, 12, 0, 20))).current).toBe(false);
    expect(scheduled).toEqual([]);
  });

  it("rejects a FireCron without its environment, function, cron or tick", async () => {
    const err = await callUnary(client.fireCron.bind(client), {
      environmentId: env,
      functionId: "",
      cron: "* * * * *",
      tickMs: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toContain("function_id");
  });

  it("refuses an invalid cron at sync, naming the function and the field", async () => {
    const err = await syncApp([cronFn("61 * * * *")]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(
      /^function shop-nightly: triggers\[0\]\.cron "61 \* \* \* \*" is not a valid cron/,
    );
  });

  it("answers GetFlowLimits with each function's limits as synced now, and not-found for another account", async () => {
    await syncApp([
      fn({
        rawJson: JSON.stringify({
          concurrency: [{ limit: 2 }, { limit: 1, key: "event.data.u", scope: "account" }],
          throttle: { limit: 3, period: "10s", burst: 1 },
        }),
      }),
    ]);
    const ask = (accountId: string, functionId = "shop-checkout") =>
      callUnary(client.getFlowLimits.bind(client), {
        functions: [{ accountId, environmentId: env, functionId }],
      });
    const got = (await ask("acct1")).functions[0];
    expect(got?.found).toBe(true);
    expect(got?.concurrency).toEqual([
      { scope: ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION, keyed: false, limit: 2 },
      { scope: ConcurrencyScope.CONCURRENCY_SCOPE_ACCOUNT, keyed: true, limit: 1 },
    ]);
    expect(got?.throttle).toEqual({ limit: 3, periodMs: 10_000, burst: 1 });
    expect((await ask("acct2")).functions[0]?.found).toBe(false);
    expect((await ask("acct1", "nope")).functions[0]?.found).toBe(false);
    // An entry no registry can hold is not found, and does not fail the others.
    const mixed = await callUnary(client.getFlowLimits.bind(client), {
      functions: [
        { accountId: "acct1", environmentId: "bad env{", functionId: "shop-checkout" },
        { accountId: "acct1", environmentId: env, functionId: "shop-checkout" },
      ],
    });
    expect(mixed.functions.map((f) => f.found)).toEqual([false, true]);
  });

  it("refuses FireDebounce and FireBatch without their environment, function or buffer id, or with a bad key hash", async () => {
    const cases = [
      () =>
        callUnary(client.fireDebounce.bind(client), {
          environmentId: env,
          functionId: "f",
          debounceId: "",
          keyHash: "",
        }),
      () =>
        callUnary(client.fireBatch.bind(client), {
          environmentId: "",
          functionId: "f",
          batchId: "b",
          keyHash: "",
        }),
      () =>
        callUnary(client.fireBatch.bind(client), {
          environmentId: env,
          functionId: "f",
          batchId: "b",
          keyHash: "NOT HEX",
        }),
    ];
    for (const call of cases) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(/required|hex/);
    }
  });

  it("refuses flow control it cannot enforce at sync, naming the function and the field", async () => {
    const err = await syncApp([fn({ rawJson: '{"throttle":{"limit":1,"period":"30d"}}' })]).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toBe(
      'function shop-checkout: throttle.period must be from 1s to 7d, got "30d"',
    );
  });
});
