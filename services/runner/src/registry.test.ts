import { ValidationError } from "@stepline/internal/errors";
import { newId } from "@stepline/internal/ids";
import { requiredEnv } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SyncInput } from "./model.js";
import { Registry } from "./registry.js";
import { validateSync } from "./validate.js";

const REDIS_URL = requiredEnv("STEPLINE_TEST_REDIS_URL");

let redis: Redis;
let registry: Registry;
const envs: string[] = [];

beforeAll(() => {
  redis = new Redis(REDIS_URL);
  registry = new Registry(redis);
});

afterAll(async () => {
  // Each test used environments of its own; remove their keys.
  for (const env of envs) {
    const keys = await redis.keys(`r:{${env}}:*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  redis.disconnect();
});

function newEnv(): string {
  const env = `test-${newId()}`;
  envs.push(env);
  return env;
}

function app(env: string, appId: string, fnIds: string[], over: Partial<SyncInput> = {}) {
  return validateSync({
    accountId: "acct1",
    environmentId: env,
    appId,
    url: `http://127.0.0.1:3000/${appId}`,
    sdk: "js:v4.24.0",
    framework: "nodejs",
    functions: fnIds.map((id) => ({
      id,
      name: id,
      triggers: [{ event: `${appId}/go`, expression: "", cron: "" }],
      url: `http://127.0.0.1:3000/${appId}?fnId=${id}&stepId=step`,
      retries: 2,
      rawJson: JSON.stringify({ id, name: id }),
    })),
    ...over,
  });
}

const ids = async (env: string) => (await registry.list(env)).map((f) => `${f.appId}:${f.fn.id}`);

describe("Registry", () => {
  it("stores a synced app's functions with their config and version", async () => {
    const env = newEnv();
    const sync = app(env, "shop", ["shop-a"]);
    expect(await registry.syncApp(sync)).toEqual({ modified: true });
    const [stored] = await registry.list(env);
    expect(stored).toEqual({ accountId: "acct1", appId: "shop", fn: sync.functions[0] });
  });

  it("replaces the app's function set: functions missing from a new sync are removed", async () => {
    const env = newEnv();
    await registry.syncApp(app(env, "shop", ["shop-a", "shop-b"]));
    expect(await registry.syncApp(app(env, "shop", ["shop-b", "shop-c"]))).toEqual({ modified: true });
    expect(await ids(env)).toEqual(["shop:shop-b", "shop:shop-c"]);
    expect(await registry.syncApp(app(env, "shop", []))).toEqual({ modified: true });
    expect(await ids(env)).toEqual([]);
  });

  it("reports modified=false when the same sync arrives again, and true when anything changes", async () => {
    const env = newEnv();
    expect((await registry.syncApp(app(env, "shop", ["shop-a"]))).modified).toBe(true);
    expect((await registry.syncApp(app(env, "shop", ["shop-a"]))).modified).toBe(false);
    const changed = app(env, "shop", ["shop-a"]);
    const fn = changed.functions[0];
    if (!fn) throw new Error("no function");
    const retried = validateSync({
      ...changed,
      functions: [{ ...fn, triggers: [{ event: "shop/go", expression: "", cron: "" }], retries: 5 }],
    });
    expect((await registry.syncApp(retried)).modified).toBe(true);
    expect((await registry.list(env))[0]?.fn.retries).toBe(5);
    expect((await registry.syncApp(retried)).modified).toBe(false);
    // A new app URL is a change too.
    expect((await registry.syncApp({ ...retried, url: "http://127.0.0.1:3001/shop" })).modified).toBe(true);
  });

  it("leaves other apps' functions in the environment untouched", async () => {
    const env = newEnv();
    await registry.syncApp(app(env, "shop", ["shop-a"]));
    await registry.syncApp(app(env, "billing", ["billing-a", "billing-b"]));
    await registry.syncApp(app(env, "shop", []));
    expect(await ids(env)).toEqual(["billing:billing-a", "billing:billing-b"]);
  });

  it("refuses a function id owned by another app of the environment, naming it, and writes nothing", async () => {
    const env = newEnv();
    await registry.syncApp(app(env, "shop", ["shared-fn"]));
    const err = await registry
      .syncApp(app(env, "billing", ["billing-a", "shared-fn"]))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/^function shared-fn: id already belongs to app shop/);
    expect(await ids(env)).toEqual(["shop:shared-fn"]);
  });

  it("keeps environments apart: the same app synced into two environments changes independently", async () => {
    const [env1, env2] = [newEnv(), newEnv()];
    await registry.syncApp(app(env1, "shop", ["shop-a"]));
    expect((await registry.syncApp(app(env2, "shop", ["shop-a"]))).modified).toBe(true);
    await registry.syncApp(app(env2, "shop", []));
    expect(await ids(env1)).toEqual(["shop:shop-a"]);
    expect(await ids(env2)).toEqual([]);
    // Owning a function id in one environment says nothing about another.
    expect((await registry.syncApp(app(env2, "billing", ["shop-a"]))).modified).toBe(true);
  });

  it("loads several environments in one call", async () => {
    const [env1, env2, empty] = [newEnv(), newEnv(), newEnv()];
    await registry.syncApp(app(env1, "shop", ["shop-a"]));
    await registry.syncApp(app(env2, "shop", ["shop-b", "shop-c"]));
    const loaded = await registry.loadMany([env1, env2, empty, env1]);
    expect([...loaded.keys()].sort()).toEqual([env1, env2, empty].sort());
    expect(loaded.get(env1)?.map((f) => f.fn.id)).toEqual(["shop-a"]);
    expect(loaded.get(env2)?.map((f) => f.fn.id)).toEqual(["shop-b", "shop-c"]);
    expect(loaded.get(empty)).toEqual([]);
  });

  it("keeps every key of an environment under the r: prefix and the environment's hash tag", async () => {
    const env = newEnv();
    await registry.syncApp(app(env, "shop", ["shop-a"]));
    const keys = (await redis.keys(`*${env}*`)).sort();
    expect(keys).toEqual([`r:{${env}}:apps`, `r:{${env}}:fns`, `r:{${env}}:owners`, `r:{${env}}:ver`]);
  });

  it("lists apps whose ids are Object.prototype's member names (the fuzz found constructor)", async () => {
    const env = newEnv();
    await registry.syncApp(app(env, "constructor", ["c-a"]));
    await registry.recordSync(env, "toString", { url: "http://127.0.0.1:3000/x", atMs: 5, error: "refused" });
    expect(await registry.listApps(env)).toMatchObject([
      { appId: "constructor", functions: 1, lastSyncAtMs: 0, lastSyncError: "" },
      { appId: "toString", functions: 0, url: "http://127.0.0.1:3000/x", lastSyncError: "refused" },
    ]);
  });

  it("reads an unchanged environment once, and sees a sync made by another runner at once", async () => {
    const env = newEnv();
    const other = new Registry(redis);
    await registry.syncApp(app(env, "shop", ["shop-a"]));
    const first = (await registry.loadMany([env])).get(env);
    expect((await registry.loadMany([env])).get(env)).toBe(first);
    await other.syncApp(app(env, "shop", ["shop-a", "shop-b"]));
    const after = (await registry.loadMany([env])).get(env);
    expect(after?.map((f) => f.fn.id)).toEqual(["shop-a", "shop-b"]);
    // A sync that changes nothing keeps the cached functions.
    await other.syncApp(app(env, "shop", ["shop-a", "shop-b"]));
    expect((await registry.loadMany([env])).get(env)).toBe(after);
  });
});
