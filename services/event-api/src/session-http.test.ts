// Sign-in over HTTP in production mode: the session cookie, the account's environments it reaches,
// CSRF on cookie-borne writes, sign-out, the failed sign-in limit, the key-based endpoints that
// ignore cookies, and dev mode left as it was. Tenancy and users are real Redis, events go to real
// Kafka; history is an in-memory stand-in that records the environment it was asked about.
import { createKafka } from "@stepline/internal/kafka";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv, uniqueTag } from "@stepline/internal/testing";
import type { Run } from "@stepline/proto/stepline/history/v1/history_service";
import { RunStatus } from "@stepline/proto/stepline/stream/v1/history_record";
import type { FastifyInstance, InjectOptions } from "fastify";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EventsTopic } from "./events-topic.fixture.js";
import { startEventsTopic } from "./events-topic.fixture.js";
import type { HttpDeps } from "./http.js";
import { buildHttpApp } from "./http.js";
import type { EventProducer } from "./producer.js";
import type { HistoryReader, RunControl } from "./rest.js";
import { signedInAs } from "./session-http.js";
import type { Environment } from "./tenancy.js";
import { TenancyStore } from "./tenancy.js";
import { unusedApps, unusedFunctions, unusedHistory, unusedRegistry } from "./unused-deps.fixture.js";
import { UserStore } from "./users.js";

const log = createLogger("event-api-test", "silent");
const tag = uniqueTag();
const prefix = `test-session-${tag}:{t}:`;
const topic = `test-eventapi-${tag}-session.events`;
const password = "a long enough password";

const run: Run = {
  runId: "01HRUN0000000000000000000A",
  accountId: "",
  environmentId: "",
  functionId: "shop-charge",
  eventId: "01HEVT0000000000000000000A",
  status: RunStatus.RUN_STATUS_RUNNING,
  startedAtMs: Date.UTC(2026, 0, 1),
  endedAtMs: 0,
  outputJson: "",
  errorJson: "",
};
/** The environments history and the executor were asked about. */
let asked: string[] = [];
const history: HistoryReader = {
  ...unusedHistory,
  listRuns: async (req) => {
    asked.push(req.environmentId);
    return { runs: [{ ...run, environmentId: req.environmentId }], nextCursor: "" };
  },
  getRun: async (environmentId) => {
    asked.push(environmentId);
    return { ...run, environmentId };
  },
};
const runs: RunControl = {
  cancelRun: async (environmentId) => {
    asked.push(environmentId);
    return { cancelled: true, status: "Cancelled" };
  },
  checkpoint: () => Promise.reject(new Error("not in this test")),
};

let redis: Redis;
let producer: EventProducer;
let events: EventsTopic;
let prod: FastifyInstance;
let common: Omit<HttpDeps, "devTenant">;
let dev: FastifyInstance;
let production: Environment;
let staging: Environment;
let otherAccountEnv: Environment;
let addrCount = 0;

beforeAll(async () => {
  redis = new Redis(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  const tenancy = new TenancyStore(redis, { prefix });
  const users = new UserStore(redis, { prefix });
  const acme = await tenancy.createAccount("acme");
  production = await tenancy.createEnvironment(acme.id, "production");
  staging = await tenancy.createEnvironment(acme.id, "staging");
  otherAccountEnv = await tenancy.createEnvironment((await tenancy.createAccount("globex")).id, "production");
  await users.createUser(acme.id, "alice", password);
  await users.createUser(acme.id, "bob", password);
  const kafka = createKafka(requiredEnv("STEPLINE_TEST_KAFKA_BROKERS"), "event-api-test", log);
  events = await startEventsTopic(kafka, topic, log);
  producer = events.producer;
  common = {
    log,
    tenants: tenancy,
    sink: producer,
    registry: unusedRegistry,
    history,
    runs,
    functions: unusedFunctions,
    apps: unusedApps,
    sessions: users,
  };
  prod = buildHttpApp({ ...common, devTenant: null });
  // What GET /v1/settings reports as `signed_in_as`, through the same helper.
  prod.get("/v1/test/signed-in-as", async (req) => ({ signed_in_as: signedInAs(req) }));
  const devEnv = await tenancy.ensureDevTenant();
  dev = buildHttpApp({ ...common, devTenant: { accountId: devEnv.accountId, environmentId: devEnv.id } });
});

afterAll(async () => {
  await prod?.close();
  await dev?.close();
  await events?.stop();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
});

beforeEach(() => {
  asked = [];
});

/** A client address of its own per test, so failed sign-ins of one test do not limit another. */
const freshAddr = () => `203.0.113.${++addrCount}`;

function signIn(username: string, pw: string, extra: Partial<InjectOptions> = {}, app = prod) {
  return app.inject({
    method: "POST",
    url: "/v1/session",
    headers: { "content-type": "application/json", ...(extra.headers as Record<string, string>) },
    payload: { username, password: pw },
    remoteAddress: extra.remoteAddress ?? freshAddr(),
  });
}

/** Signs in and returns the cookie to send and the CSRF token. */
async function session(username = "alice") {
  const res = await signIn(username, password);
  expect(res.statusCode).toBe(200);
  const setCookie = String(res.headers["set-cookie"]);
  return { cookie: setCookie.split(";")[0] ?? "", csrf: res.json().data.csrf_token as string, res };
}

const call = (
  method: InjectOptions["method"],
  url: string,
  headers: Record<string, string>,
  payload?: unknown,
) => prod.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as string }) });

describe("sign-in (production mode)", () => {
  it("signs in with an HttpOnly SameSite=Strict cookie that reads the account's oldest environment", async () => {
    const { cookie, csrf, res } = await session();
    expect(res.json()).toEqual({
      data: { user: "alice", account_id: production.accountId, csrf_token: csrf },
    });
    const setCookie = String(res.headers["set-cookie"]);
    expect(setCookie).toMatch(
      /^stepline_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=604800$/,
    );
    expect(res.headers["cache-control"]).toBe("no-store");

    const runsRes = await call("GET", "/v1/runs", { cookie });
    expect(runsRes.statusCode).toBe(200);
    expect(runsRes.json().data[0].run_id).toBe(run.runId);
    expect((await call("GET", `/v1/runs/${run.runId}`, { cookie })).statusCode).toBe(200);
    expect(asked).toEqual([production.id, production.id]);
    await call("GET", "/v1/runs", { cookie, "x-stepline-environment": staging.id });
    expect(asked[2]).toBe(staging.id);
    const envs = (await call("GET", "/v1/environments", { cookie })).json();
    expect(envs.current).toBe(production.id);
    expect(envs.data.map((e: { name: string }) => e.name)).toEqual(["production", "staging"]);
    expect((await call("GET", "/v1/session", { cookie })).json()).toEqual(res.json());
  });

  it("tells who is signed in (for GET /v1/settings): the user, or null", async () => {
    const { cookie } = await session();
    const who = (headers: Record<string, string>) =>
      call("GET", "/v1/test/signed-in-as", headers).then((r) => r.json().signed_in_as);
    expect(await who({ cookie })).toBe("alice");
    expect(await who({})).toBeNull();
    expect(await who({ cookie: "stepline_session=x" })).toBeNull();
    expect(await who({ cookie, authorization: `Bearer ${production.signingKey}` })).toBeNull();
  });

  it("marks the cookie Secure when the request came over https", async () => {
    const res = await signIn("alice", password, { headers: { "x-forwarded-proto": "https" } });
    expect(String(res.headers["set-cookie"])).toMatch(/; Secure$/);
  });

  it("answers a wrong password and an unknown user alike: 401, one message", async () => {
    const wrong = await signIn("alice", "not the password");
    const unknown = await signIn("mallory", password);
    for (const res of [wrong, unknown]) {
      expect(res.statusCode).toBe(401);
      expect(res.json()).toEqual({ error: "wrong username or password", status: 401 });
      expect(res.headers["set-cookie"]).toBeUndefined();
    }
    expect((await signIn("alice", "")).json().error).toBe("wrong username or password");
    const form = await prod.inject({
      method: "POST",
      url: "/v1/session",
      headers: { "content-type": "text/plain" },
      payload: JSON.stringify({ username: "alice", password }),
    });
    expect(form.statusCode).toBe(415);
  });

  it("holds cookie-borne writes to the session's CSRF token; key-borne ones need none", async () => {
    const { cookie, csrf } = await session();
    const event = { name: "shop/order.placed", data: { total: 1 } };
    const json = { "content-type": "application/json" };
    for (const token of [undefined, "wrong", `${csrf}x`]) {
      const res = await call(
        "POST",
        "/v1/events",
        { ...json, cookie, ...(token ? { "x-csrf-token": token } : {}) },
        event,
      );
      expect(res.statusCode).toBe(403);
      expect(res.json()).toEqual({ error: "missing or wrong X-CSRF-Token", status: 403 });
    }
    expect((await call("DELETE", `/v1/runs/${run.runId}`, { cookie })).statusCode).toBe(403);
    expect(asked).toEqual([]);
    const sent = await call("POST", "/v1/events", { ...json, cookie, "x-csrf-token": csrf }, event);
    expect(sent.statusCode).toBe(200);
    expect(await events.count()).toBe(1);
    const cancelled = await call("DELETE", `/v1/runs/${run.runId}`, { cookie, "x-csrf-token": csrf });
    expect(cancelled.statusCode).toBe(200);
    expect(asked).toEqual([production.id]);
    // A signing key is not sent by browsers on their own: no CSRF token, and the key's environment.
    const byKey = await call("DELETE", `/v1/runs/${run.runId}`, {
      cookie,
      authorization: `Bearer ${otherAccountEnv.signingKey}`,
    });
    expect(byKey.statusCode).toBe(200);
    expect(asked[1]).toBe(otherAccountEnv.id);
  });

  it("ends the session at sign-out, server-side: the old cookie is refused after", async () => {
    const { cookie, csrf } = await session("bob");
    const out = await call("DELETE", "/v1/session", { cookie, "x-csrf-token": csrf });
    expect(out.statusCode).toBe(200);
    expect(String(out.headers["set-cookie"])).toMatch(
      /^stepline_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0$/,
    );
    const after = await call("GET", "/v1/session", { cookie });
    expect(after.statusCode).toBe(401);
    expect(after.json()).toEqual({ error: "not signed in", status: 401 });
    expect((await call("GET", "/v1/runs", { cookie })).statusCode).toBe(401);
    expect(asked).toEqual([]);
  });

  it("answers 404 for an environment of another account named in the header", async () => {
    const { cookie } = await session();
    const res = await call("GET", "/v1/runs", { cookie, "x-stepline-environment": otherAccountEnv.id });
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toBe(`environment ${otherAccountEnv.id} is not one of this account's`);
    expect(asked).toEqual([]);
  });

  it("answers 429 with Retry-After after 10 failed sign-ins of a username, even to its password", async () => {
    for (let i = 0; i < 10; i++) expect((await signIn("bob", `guess number ${i}`)).statusCode).toBe(401);
    const limited = await signIn("bob", password);
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(890);
    expect(limited.json().error).toMatch(/^too many failed sign-ins; try again in 15 minutes$/);
    // From one address, the limit spans usernames.
    const addr = freshAddr();
    for (let i = 0; i < 10; i++) await signIn(`user${i}`, password, { remoteAddress: addr });
    expect((await signIn("alice", password, { remoteAddress: addr })).statusCode).toBe(429);
    expect((await signIn("alice", password)).statusCode).toBe(200);
  });

  it("behind a trusted proxy, limits by the client's address from X-Forwarded-For, not the proxy's", async () => {
    const proxy = freshAddr();
    const behind = buildHttpApp({ ...common, devTenant: null, trustProxy: [proxy] });
    try {
      const [client, other] = [freshAddr(), freshAddr()];
      const via = (who: string) => ({ remoteAddress: proxy, headers: { "x-forwarded-for": who } });
      for (let i = 0; i < 10; i++) await signIn(`proxied${i}`, password, via(client), behind);
      expect((await signIn("alice", password, via(client), behind)).statusCode).toBe(429);
      // Another client behind the same proxy is not held up by the first one's failures.
      expect((await signIn("alice", password, via(other), behind)).statusCode).toBe(200);
      // An untrusted peer's X-Forwarded-For is ignored: the limit stays on its own address.
      const peer = freshAddr();
      for (let i = 0; i < 10; i++)
        await signIn(
          `spoof${i}`,
          password,
          { remoteAddress: peer, headers: { "x-forwarded-for": freshAddr() } },
          behind,
        );
      expect((await signIn("alice", password, { remoteAddress: peer }, behind)).statusCode).toBe(429);
    } finally {
      await behind.close();
    }
  });

  it("keeps key-based endpoints on their keys (cookies are ignored), and 401 without either", async () => {
    const { cookie, csrf } = await session();
    const headers = { cookie, "x-csrf-token": csrf, "content-type": "application/json" };
    const register = await call("POST", "/fn/register", headers, {
      url: "http://127.0.0.1:3000/api",
      functions: [],
    });
    expect(register.statusCode).toBe(401);
    const checkpoint = await call("POST", `/v1/checkpoint/${run.runId}/async`, headers, { steps: [] });
    expect(checkpoint.statusCode).toBe(401);
    const events = await call("POST", "/e/not-a-key", headers, { name: "a" });
    expect(events.statusCode).toBe(401);
    const none = await call("GET", "/v1/runs", {});
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toBe(
      'unauthorized: send "Authorization: Bearer <signing key>" (the REST API needs a signing key)',
    );
    expect((await call("GET", "/v1/runs", { cookie: "stepline_session=forged" })).statusCode).toBe(401);
  });

  it("serves /metrics only on the admin port: the public one answers 404", async () => {
    for (const app of [prod, dev]) {
      const res = await app.inject({ method: "GET", url: "/metrics", headers: { accept: "text/plain" } });
      expect(res.statusCode).toBe(404);
    }
  });
});

describe("dev mode", () => {
  it("needs no sign-in, cookie or CSRF token, and has no session endpoint", async () => {
    const res = await dev.inject({ method: "GET", url: "/v1/runs" });
    expect(res.statusCode).toBe(200);
    const sent = await dev.inject({
      method: "POST",
      url: "/v1/events",
      headers: { "content-type": "application/json", cookie: "stepline_session=whatever" },
      payload: { name: "dev/ping" },
    });
    expect(sent.statusCode).toBe(200);
    expect((await signIn("alice", password, {}, dev)).statusCode).toBe(404);
  });
});
