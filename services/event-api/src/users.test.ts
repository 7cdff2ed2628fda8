// The user store against real Redis: usernames unique (atomically, in any case), passwords kept
// only as argon2id hashes, sessions stored by their token's digest with idle and absolute ends,
// deleting a user ending their sessions, and failed sign-ins limited per username and address.
import { ConflictError, NotFoundError, ValidationError } from "@stepline/internal/errors";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TenancyStore } from "./tenancy.js";
import type { Session } from "./users.js";
import { tokenDigest, UserStore } from "./users.js";

const prefix = `test-users-${uniqueTag()}:{t}:`;
const password = "correct horse battery";

let redis: Redis;
let store: UserStore;
let accountId: string;
let now = Date.UTC(2026, 0, 1);
const clock = { now: () => now };

beforeAll(async () => {
  redis = new Redis(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  accountId = (await new TenancyStore(redis, { prefix }).createAccount("acme")).id;
  store = new UserStore(redis, { prefix, clock });
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Signs in and expects a session. */
async function signedIn(username: string, pw = password, addr = "10.0.0.1") {
  const res = await store.signIn(username, pw, addr);
  if (res.kind !== "ok") throw new Error(`expected a session, got ${res.kind}`);
  return res;
}

describe("UserStore", () => {
  it("creates a user with an argon2id hash, and refuses the username again in any case", async () => {
    const user = await store.createUser(accountId, "Ada.L@example", password);
    expect(user).toEqual({ username: "Ada.L@example", accountId, createdAtMs: now });
    const row = await redis.hgetall(`${prefix}user:ada.l@example`);
    expect(row.passwordHash).toMatch(/^\$argon2id\$/);
    expect(JSON.stringify(row)).not.toContain(password);
    await expect(store.createUser(accountId, "ada.l@EXAMPLE", "another long password")).rejects.toThrow(
      new ConflictError('user "ada.l@EXAMPLE" already exists'),
    );
    expect((await store.listUsers(accountId)).map((u) => u.username)).toEqual(["Ada.L@example"]);
  });

  it("gives one user when the same username is created several times at once", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => store.createUser(accountId, "racer", `${password}-${i}`)),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const refused = results.filter((r) => r.status === "rejected");
    expect(refused).toHaveLength(4);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect((await store.listUsers()).filter((u) => u.username === "racer")).toHaveLength(1);
  });

  it.each([
    ["bad name", "bad name", password, ValidationError],
    ["empty name", "", password, ValidationError],
    ["65 characters", "a".repeat(65), password, ValidationError],
    ["short password", "shorty", "elevenchars", ValidationError],
  ])("refuses a bad user (%s)", async (_what, username, pw, kind) => {
    await expect(store.createUser(accountId, username, pw)).rejects.toBeInstanceOf(kind);
  });

  it("refuses a user of an account that does not exist", async () => {
    await expect(store.createUser("01HZZZZZZZZZZZZZZZZZZZZZZZ", "ghost", password)).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it("verifies the password (any case of username), and refuses a wrong one or an unknown user alike", async () => {
    await store.createUser(accountId, "grace", password);
    const ok = await signedIn("GRACE");
    expect(ok.session).toMatchObject({ username: "grace", accountId, expiresAtMs: now + 7 * 86_400_000 });
    expect(ok.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ok.session.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await store.signIn("grace", "wrong password!!", "10.0.0.2")).toEqual({ kind: "wrong" });
    expect(await store.signIn("nobody", password, "10.0.0.2")).toEqual({ kind: "wrong" });
    expect(await store.signIn("bad name", password, "10.0.0.2")).toEqual({ kind: "wrong" });
    // Stored under the token's digest, never the token itself.
    expect(await redis.exists(`${prefix}session:${tokenDigest(ok.token)}`)).toBe(1);
    expect(await redis.keys(`${prefix}*${ok.token}*`)).toEqual([]);
    expect(await store.touchSession(ok.token)).toEqual(ok.session);
    expect(await store.touchSession("x".repeat(43))).toBeNull();
  });

  it("ends a session at sign-out, when idle too long, and at its absolute end however busy", async () => {
    await store.createUser(accountId, "linus", password);
    const out = await signedIn("linus");
    expect(await store.endSession(out.token)).toBe(true);
    expect(await store.touchSession(out.token)).toBeNull();
    expect(await store.endSession(out.token)).toBe(false);

    // Idle ends are Redis expiries (real time): a use 600 ms in pushes the 1 s end back.
    const short = new UserStore(redis, { prefix, clock, idleMs: 1000, absoluteMs: 60_000 });
    const idle = await short.signIn("linus", password, "10.0.0.3");
    if (idle.kind !== "ok") throw new Error(idle.kind);
    await sleep(600);
    expect(await short.touchSession(idle.token)).not.toBeNull();
    await sleep(600);
    expect(await short.touchSession(idle.token)).not.toBeNull();
    await sleep(1300);
    expect(await short.touchSession(idle.token)).toBeNull();

    const busy = await signedIn("linus");
    now += 7 * 86_400_000 - 1;
    expect(await store.touchSession(busy.token)).not.toBeNull();
    now += 1;
    expect(await store.touchSession(busy.token)).toBeNull();
    expect(await redis.exists(`${prefix}session:${tokenDigest(busy.token)}`)).toBe(0);
  });

  it("ends every session of a user it deletes", async () => {
    await store.createUser(accountId, "margaret", password);
    const a = await signedIn("margaret");
    const b = await signedIn("margaret", password, "10.0.0.9");
    expect(await store.deleteUser("Margaret")).toBe(2);
    const gone: Array<Session | null> = await Promise.all([a, b].map((s) => store.touchSession(s.token)));
    expect(gone).toEqual([null, null]);
    expect(await store.signIn("margaret", password, "10.0.0.1")).toEqual({ kind: "wrong" });
    expect((await store.listUsers()).some((u) => u.username === "margaret")).toBe(false);
    await expect(store.deleteUser("margaret")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("limits failed sign-ins per username and per address, and says when to come back", async () => {
    const limited = new UserStore(redis, { prefix, clock, maxFailures: 3, failureWindowMs: 60_000 });
    await limited.createUser(accountId, "target", password);
    for (let i = 0; i < 3; i++) {
      expect(await limited.signIn("target", "wrong password!!", `192.0.2.${i}`)).toEqual({ kind: "wrong" });
    }
    // The username is locked for everyone, even with its right password.
    const locked = await limited.signIn("target", password, "192.0.2.99");
    expect(locked.kind).toBe("limited");
    expect(locked.kind === "limited" && locked.retryAfterMs).toBeGreaterThan(50_000);
    // An address that failed as often is locked for every username.
    await limited.createUser(accountId, "bystander", password);
    for (const name of ["x1", "x2", "x3"]) await limited.signIn(name, password, "198.51.100.7");
    expect((await limited.signIn("bystander", password, "198.51.100.7")).kind).toBe("limited");
    expect((await limited.signIn("bystander", password, "198.51.100.8")).kind).toBe("ok");
    // A success takes back its own attempt: signing in often from one address is no failure.
    for (let i = 0; i < 5; i++) {
      expect((await limited.signIn("bystander", password, "198.51.100.9")).kind).toBe("ok");
    }
  });
});
