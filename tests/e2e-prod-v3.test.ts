// Production mode with the official SDK v3: the older major syncs with its hashed signing key,
// checks Stepline's signatures, signs its answers, and its runs complete. (v3 and v4 cannot serve
// from one process, hence a file of its own.)
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync, serveSdkApp } from "./support/sdk-app.js";
import { createTenant } from "./support/tenants.js";

let cluster: Cluster;
let app: SdkApp;
let eventKey = "";
let signingKey = "";
const ran: string[] = [];

beforeAll(async () => {
  cluster = await startCluster({ name: "prodv3", dev: false });
  const env = await createTenant(cluster.tenantAddr, "legacy-co", "production");
  eventKey = env.eventKeys[0] ?? "";
  signingKey = env.signingKey;
  const opts = { sdk: "v3" as const, id: "legacy", baseUrl: cluster.apiUrl, signingKey };
  const client = makeClient(opts);
  const fn = client.createFunction({ id: "ship" }, { event: "legacy/ship" }, async ({ event, step }: any) => {
    const label = await step.run("label", () => {
      ran.push("label");
      return `parcel-${event.data.n}`;
    });
    const sent = await step.run("send", () => {
      ran.push("send");
      return `${label} sent`;
    });
    return { sent };
  });
  app = await serveAndSync(opts, client, [fn]);
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

it("runs a v3 function in production mode, with signatures checked both ways", async () => {
  const sent = await sendEvents(cluster.apiUrl, eventKey, { name: "legacy/ship", data: { n: 7 } });
  expect(sent.status).toBe(200);
  const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { auth: signingKey });
  expect(run?.status).toBe("Completed");
  expect(run?.function_id).toBe("legacy-ship");
  expect(run?.output).toEqual({ sent: "parcel-7 sent" });
  expect(ran).toEqual(["label", "send"]);
});

it("refuses a sync signed with a key Stepline does not know", async () => {
  const opts = {
    sdk: "v3" as const,
    id: "intruder",
    baseUrl: cluster.apiUrl,
    signingKey: `signkey-prod-${"ab".repeat(32)}`,
  };
  const client = makeClient(opts);
  const fn = client.createFunction({ id: "noop" }, { event: "legacy/ship" }, async () => "nope");
  const intruder = await serveSdkApp(opts, client, [fn]);
  try {
    const synced = await intruder.sync();
    expect(synced.status).toBe(401);
    expect(JSON.stringify(synced.body)).toMatch(/signing key is not known/);
  } finally {
    await intruder.close();
  }
});
