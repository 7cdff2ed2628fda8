// End-to-end in production mode: keys are required, tenants are isolated, and the official SDK
// really checks Stepline's request signatures (and Stepline checks the SDK's).

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getRun, sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";
import { createTenant } from "./support/tenants.js";

const CLI = fileURLToPath(new URL("../services/event-api/dist/cli.js", import.meta.url));
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ name: "prod", dev: false });
});

afterAll(async () => {
  await cluster?.stop();
});

/** Sum of the high watermarks of the events topic: grows by one per record produced. */
async function eventsProduced(): Promise<number> {
  const kafka = new Kafka({
    brokers: (process.env.STEPLINE_TEST_KAFKA_BROKERS ?? "").split(","),
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(`${cluster.topicPrefix}events`);
    return offsets.reduce((sum, p) => sum + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
}

describe("two tenants with the same event name", () => {
  const ran: string[] = [];
  const apps: SdkApp[] = [];
  let envA: Environment;
  let envB: Environment;

  beforeAll(async () => {
    envA = await createTenant(cluster.tenantAddr, "acme", "production");
    envB = await createTenant(cluster.tenantAddr, "globex", "production");
    for (const [label, env] of [
      ["a", envA],
      ["b", envB],
    ] as const) {
      const opts = {
        sdk: "v4" as const,
        id: `shop-${label}`,
        baseUrl: cluster.apiUrl,
        signingKey: env.signingKey,
      };
      const client = makeClient(opts);
      const fn = client.createFunction(
        { id: "on-order", triggers: [{ event: "shop/order.placed" }] },
        async ({ step }: any) => {
          const who = await step.run("record", () => {
            ran.push(label);
            return label;
          });
          return { handledBy: who };
        },
      );
      apps.push(await serveAndSync(opts, client, [fn]));
    }
  });

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
  });

  it("starts only the function of the environment whose key received the event", async () => {
    const sent = await sendEvents(cluster.apiUrl, envA.eventKeys[0] ?? "", {
      name: "shop/order.placed",
      data: { id: 1 },
    });
    expect(sent.status).toBe(200);
    const eventId = sent.body.ids[0];
    const runs = await waitForEndedRuns(cluster.apiUrl, eventId, { auth: envA.signingKey });
    expect(runs).toHaveLength(1);
    expect(runs[0]?.status).toBe("Completed");
    expect(runs[0]?.function_id).toBe("shop-a-on-order");
    expect(runs[0]?.output).toEqual({ handledBy: "a" });
    expect(ran).toEqual(["a"]);

    const sentB = await sendEvents(cluster.apiUrl, envB.eventKeys[0] ?? "", {
      name: "shop/order.placed",
      data: {},
    });
    const runsB = await waitForEndedRuns(cluster.apiUrl, sentB.body.ids[0], { auth: envB.signingKey });
    expect(runsB.map((r) => r.function_id)).toEqual(["shop-b-on-order"]);
    expect(ran).toEqual(["a", "b"]);
  });

  it("does not show one tenant's runs to another tenant's key", async () => {
    const sent = await sendEvents(cluster.apiUrl, envA.eventKeys[0] ?? "", {
      name: "shop/order.placed",
      data: {},
    });
    const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { auth: envA.signingKey });
    expect(run).toBeDefined();
    await expect(getRun(cluster.apiUrl, run?.run_id ?? "", envB.signingKey)).rejects.toThrow(/404/);
    await expect(getRun(cluster.apiUrl, run?.run_id ?? "")).rejects.toThrow(/401/);
  });
});

describe("bad input to the event API", () => {
  let key: string;

  beforeAll(async () => {
    const env = await createTenant(cluster.tenantAddr, "initech", "production");
    key = env.eventKeys[0] ?? "";
  });

  const post = (k: string, body: string, contentType = "application/json") =>
    fetch(`${cluster.apiUrl}/e/${k}`, { method: "POST", headers: { "content-type": contentType }, body });

  it("answers each bad request with a 4xx that names the problem, and produces nothing to Kafka", async () => {
    const before = await eventsProduced();
    const cases: Array<[string, Response, number, RegExp]> = [
      ["malformed JSON", await post(key, '{"name": "x", '), 400, /json/i],
      ["missing name", await post(key, JSON.stringify({ data: {} })), 400, /name/i],
      ["data not an object", await post(key, JSON.stringify({ name: "a/b", data: [1] })), 400, /data/i],
      ["wrong event key", await post("not-a-real-key", JSON.stringify({ name: "a/b" })), 401, /key/i],
      [
        "oversized event",
        await post(key, JSON.stringify({ name: "big", data: { blob: "x".repeat(600 * 1024) } })),
        413,
        /512/,
      ],
      [
        "oversized request",
        await post(
          key,
          JSON.stringify(
            Array.from({ length: 8 }, () => ({ name: "many", data: { blob: "y".repeat(400 * 1024) } })),
          ),
        ),
        413,
        /3 ?MiB|request/i,
      ],
    ];
    for (const [what, res, status, message] of cases) {
      const body = (await res.json()) as { error?: string };
      expect(res.status, what).toBe(status);
      expect(body.error, what).toMatch(message);
    }
    expect(await eventsProduced()).toBe(before);
  });
});

describe("the tenancy CLI", () => {
  const cli = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, "--addr", cluster.tenantAddr, ...args], (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      );
    });

  it("creates an account and an environment whose event key the event API then accepts", async () => {
    const account = await cli("--json", "accounts", "create", "cli-corp");
    expect(account.code, account.stderr).toBe(0);
    const accountId = JSON.parse(account.stdout).id;
    const env = await cli("--json", "envs", "create", accountId, "staging");
    expect(env.code, env.stderr).toBe(0);
    const created = JSON.parse(env.stdout);
    expect(created.signingKey).toMatch(/^signkey-/);

    const listed = await cli("--json", "envs", "list", accountId);
    expect(JSON.parse(listed.stdout).map((e: { id: string }) => e.id)).toEqual([created.id]);
    const accounts = await cli("--json", "accounts", "list");
    expect(JSON.parse(accounts.stdout).map((a: { id: string }) => a.id)).toContain(accountId);

    const sent = await sendEvents(cluster.apiUrl, created.eventKeys[0], { name: "cli/hello", data: {} });
    expect(sent.status).toBe(200);
  });

  it("answers bad usage with exit code 2 and a message", async () => {
    const res = await cli("envs", "create", "only-one-arg");
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/envs create <accountId> <name>/);
  });
});

describe("secrets", () => {
  it("never writes an event key or a signing key to any service's log", async () => {
    const env = await createTenant(cluster.tenantAddr, "hush", "production");
    const opts = { sdk: "v4" as const, id: "hush-app", baseUrl: cluster.apiUrl, signingKey: env.signingKey };
    const client = makeClient(opts);
    const fn = client.createFunction({ id: "quiet", triggers: [{ event: "hush/ping" }] }, async () => "shh");
    const app = await serveAndSync(opts, client, [fn]);
    try {
      const eventKey = env.eventKeys[0] ?? "";
      const sent = await sendEvents(cluster.apiUrl, eventKey, { name: "hush/ping", data: {} });
      await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { auth: env.signingKey });
      // Failures log too: a wrong key and a bad request.
      await sendEvents(cluster.apiUrl, `${eventKey}x`, { name: "hush/ping" });
      await sendEvents(cluster.apiUrl, eventKey, "{bad json");
    } finally {
      await app.close();
    }
    await cluster.stop(); // flushes every log
    const logs = cluster.logs();
    expect(logs.length).toBeGreaterThan(0);
    const secretPart = env.signingKey.replace(/^signkey-[^-]+-/, "");
    for (const secret of [env.eventKeys[0] ?? "", secretPart]) {
      expect(secret.length).toBeGreaterThan(20);
      expect(logs.includes(secret), "a key appears in the service logs").toBe(false);
    }
  });
});
