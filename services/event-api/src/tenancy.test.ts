import { ConflictError, NotFoundError, ValidationError } from "@stepline/internal/errors";
import { requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventKeyDigest, hashSigningKey } from "./keys.js";
import { DEV_ACCOUNT_ID, DEV_ENVIRONMENT_ID, TenancyStore } from "./tenancy.js";

const redisUrl = requiredEnv("STEPLINE_TEST_REDIS_URL");
const prefix = `test-tenancy-${uniqueTag()}:{t}:`;
let redis: Redis;
let store: TenancyStore;

beforeAll(() => {
  redis = new Redis(redisUrl);
  store = new TenancyStore(redis, { prefix, negativeCacheTtlMs: 0 });
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("TenancyStore", () => {
  it("creates accounts and lists them oldest first", async () => {
    const a = await store.createAccount("  acme ");
    const b = await store.createAccount("globex");
    expect(a.name).toBe("acme");
    const ids = (await store.listAccounts()).map((x) => x.id);
    expect(ids.indexOf(a.id)).toBeLessThan(ids.indexOf(b.id));
    expect(await store.getAccount(a.id)).toEqual(a);
  });

  it("refuses empty, overlong and control-character account names", async () => {
    await expect(store.createAccount("   ")).rejects.toThrow(ValidationError);
    await expect(store.createAccount("x".repeat(101))).rejects.toThrow(/too long/);
    await expect(store.createAccount("a\u0007b")).rejects.toThrow(/control characters/);
  });

  it("creates an environment with one event key and one signing key that both resolve to it", async () => {
    const account = await store.createAccount("initech");
    const env = await store.createEnvironment(account.id, "Production");
    expect(env.eventKeys).toHaveLength(1);
    expect(env.eventKeys[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(env.signingKey).toMatch(/^signkey-production-[0-9a-f]{64}$/);
    const ref = { accountId: account.id, environmentId: env.id };
    expect(await store.resolveEventKey(env.eventKeys[0] ?? "")).toEqual(ref);
    expect(await store.resolveSigningKey(env.signingKey)).toEqual(ref);
    expect(await store.resolveSigningKey(hashSigningKey(env.signingKey) ?? "")).toEqual(ref);
    expect(await store.getEnvironment(env.id)).toEqual(env);
  });

  it("keeps no event key or raw signing key in its lookup indexes", async () => {
    const account = await store.createAccount("hygiene");
    const env = await store.createEnvironment(account.id, "prod");
    const eventIdx = await redis.hkeys(`${prefix}idx:eventkey`);
    const signIdx = await redis.hkeys(`${prefix}idx:signkey`);
    expect(eventIdx).toContain(eventKeyDigest(env.eventKeys[0] ?? ""));
    expect(eventIdx).not.toContain(env.eventKeys[0]);
    expect(signIdx).not.toContain(env.signingKey);
  });

  it("refuses a second environment of the same name (any case) in one account, but not in another", async () => {
    const a = await store.createAccount("a");
    const b = await store.createAccount("b");
    await store.createEnvironment(a.id, "staging");
    await expect(store.createEnvironment(a.id, "Staging")).rejects.toThrow(ConflictError);
    await expect(store.createEnvironment(b.id, "staging")).resolves.toMatchObject({ name: "staging" });
  });

  it("creates one environment when a replica creates a name another replica is still creating", async () => {
    const a = await store.createAccount("racy");
    // A slow replica: once its create has sent its first write (the one that claims the name),
    // its connection stalls: every later command waits until the fast replica is done.
    const slowConnection = new Redis(redisUrl);
    await slowConnection.ping();
    let wrote = false;
    let unstall: () => void = () => {};
    const stalled = new Promise<void>((resolve) => {
      unstall = resolve;
    });
    const send = slowConnection.sendCommand.bind(slowConnection);
    slowConnection.sendCommand = ((...args: Parameters<typeof send>) => {
      if (!wrote) {
        wrote = !["hgetall", "hget", "exists", "lrange", "script"].includes(args[0].name);
        return send(...args);
      }
      void stalled.then(() => send(...args));
      return args[0].promise;
    }) as typeof send;
    const slow = new TenancyStore(slowConnection, { prefix }).createEnvironment(a.id, "prod");
    await waitFor("the slow replica to claim the name", async () =>
      (await redis.hexists(`${prefix}acct:${a.id}:envnames`, "prod")) === 1 ? true : undefined,
    );
    const fast = await store.createEnvironment(a.id, "prod").catch((e: unknown) => e);
    unstall();
    const results = [await slow.catch((e: unknown) => e), fast];
    slowConnection.disconnect();
    expect(results.filter((r) => r instanceof ConflictError)).toHaveLength(1);
    expect((await store.listEnvironments(a.id)).map((e) => e.name)).toEqual(["prod"]);
  });

  it("takes over a name reserved by a create that never wrote its environment", async () => {
    const a = await store.createAccount("crashy");
    await redis.hset(`${prefix}acct:${a.id}:envnames`, "prod", "01HZZZZZZZZZZZZZZZZZZZZZZZ");
    await expect(store.createEnvironment(a.id, "prod")).resolves.toMatchObject({ name: "prod" });
  });

  it("validates environment names and account ids", async () => {
    const a = await store.createAccount("v");
    await expect(store.createEnvironment(a.id, "")).rejects.toThrow(/name is required/);
    await expect(store.createEnvironment(a.id, "bad/name")).rejects.toThrow(/letters, digits/);
    await expect(store.createEnvironment(a.id, "x".repeat(65))).rejects.toThrow(/too long/);
    await expect(store.createEnvironment("", "prod")).rejects.toThrow(/account_id is required/);
    await expect(store.createEnvironment("nope", "prod")).rejects.toThrow(/account_id must be a ULID/);
    await expect(store.createEnvironment("01HZZZZZZZZZZZZZZZZZZZZZZZ", "prod")).rejects.toThrow(
      NotFoundError,
    );
  });

  it("lists an account's environments with their keys, oldest first", async () => {
    const a = await store.createAccount("lister");
    const e1 = await store.createEnvironment(a.id, "one");
    const e2 = await store.createEnvironment(a.id, "two");
    expect((await store.listEnvironments(a.id)).map((e) => e.id)).toEqual([e1.id, e2.id]);
    await expect(store.listEnvironments("01HZZZZZZZZZZZZZZZZZZZZZZZ")).rejects.toThrow(NotFoundError);
  });

  it("adds event keys to an environment, each resolving to it", async () => {
    const a = await store.createAccount("keys");
    const env = await store.createEnvironment(a.id, "prod");
    const key = await store.createEventKey(env.id);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect((await store.getEnvironment(env.id)).eventKeys).toEqual([env.eventKeys[0], key]);
    expect(await store.resolveEventKey(key)).toEqual({ accountId: a.id, environmentId: env.id });
    await expect(store.createEventKey("01HZZZZZZZZZZZZZZZZZZZZZZZ")).rejects.toThrow(NotFoundError);
  });

  it("lists event keys oldest first, even when several are made in the same millisecond", async () => {
    const a = await store.createAccount("many-keys");
    const env = await store.createEnvironment(a.id, "prod");
    const made = [env.eventKeys[0]];
    for (let i = 0; i < 8; i++) made.push(await store.createEventKey(env.id));
    expect((await store.getEnvironment(env.id)).eventKeys).toEqual(made);
  });

  it("resolves unknown, empty and malformed keys to null", async () => {
    expect(await store.resolveEventKey("nope")).toBeNull();
    expect(await store.resolveEventKey("")).toBeNull();
    expect(await store.resolveSigningKey("Bearer x")).toBeNull();
    expect(await store.resolveSigningKey(`signkey-prod-${"ab".repeat(32)}`)).toBeNull();
  });

  it("keeps tenancy durably in Redis: a new store on a new connection sees it", async () => {
    const a = await store.createAccount("durable");
    const env = await store.createEnvironment(a.id, "prod");
    const other = new Redis(redisUrl);
    try {
      const fresh = new TenancyStore(other, { prefix });
      expect(await fresh.getEnvironment(env.id)).toEqual(env);
      expect(await fresh.resolveEventKey(env.eventKeys[0] ?? "")).toEqual({
        accountId: a.id,
        environmentId: env.id,
      });
    } finally {
      other.disconnect();
    }
  });

  it("creates dev mode's default tenant once, with fixed ids, even when replicas race", async () => {
    const devPrefix = `${prefix}dev:`;
    const stores = Array.from({ length: 4 }, () => new TenancyStore(redis, { prefix: devPrefix }));
    const envs = await Promise.all(stores.map((s) => s.ensureDevTenant()));
    const signingKeys = new Set(envs.map((e) => e.signingKey));
    expect(signingKeys.size).toBe(1);
    const env = envs[0];
    expect(env).toMatchObject({ id: DEV_ENVIRONMENT_ID, accountId: DEV_ACCOUNT_ID, name: "dev" });
    expect(env?.signingKey).toMatch(/^signkey-dev-[0-9a-f]{64}$/);
    const ref = { accountId: DEV_ACCOUNT_ID, environmentId: DEV_ENVIRONMENT_ID };
    expect(await stores[0]?.resolveSigningKey(env?.signingKey ?? "")).toEqual(ref);
    expect(await stores[0]?.resolveEventKey(env?.eventKeys[0] ?? "")).toEqual(ref);
    const again = await stores[1]?.ensureDevTenant();
    expect(again?.signingKey).toBe(env?.signingKey);
    expect((await stores[0]?.listAccounts())?.map((a) => a.name)).toEqual(["default"]);
  });
});
