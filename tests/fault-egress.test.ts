// Fault tests of what a tenant or a stranger can reach, in production mode with no allow-list: an
// app whose synced URL points at the cluster's own ClickHouse is never called (its run fails at
// once, saying why), and an internal gRPC call without the cluster's token is refused.

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { credentials } from "@grpc/grpc-js";
import { UnauthenticatedError } from "@stepline/internal/errors";
import { callUnary, createClient } from "@stepline/internal/grpc";
import { requiredEnv } from "@stepline/internal/testing";
import type { Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import { serve } from "inngest/node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import { makeClient } from "./support/sdk-app.js";
import { createTenant } from "./support/tenants.js";

let cluster: Cluster;
let env: Environment;
let syncServer: ReturnType<typeof createServer>;
let ran = 0;

beforeAll(async () => {
  cluster = await startCluster({ name: "egress", dev: false, env: { STEPLINE_EXECUTOR_EGRESS_ALLOW: "" } });
  env = await createTenant(cluster.tenantAddr, "egress-corp", "production");
  const opts = { sdk: "v4" as const, id: "sneaky", baseUrl: cluster.apiUrl, signingKey: env.signingKey };
  const client = makeClient(opts);
  const fn = client.createFunction({ id: "peek", triggers: [{ event: "egress/peek" }] }, async () => {
    ran++;
    return "never";
  });
  // The app syncs from its own server, but names ClickHouse's HTTP port as where it is served.
  const clickhouse = new URL(requiredEnv("STEPLINE_TEST_CLICKHOUSE_URL"));
  const handler = serve({
    client,
    functions: [fn],
    serveOrigin: `http://127.0.0.1:${clickhouse.port}`,
    servePath: "/",
  });
  syncServer = createServer(handler);
  await new Promise<void>((resolve) => syncServer.listen(0, "127.0.0.1", resolve));
  const synced = await fetch(`http://127.0.0.1:${(syncServer.address() as AddressInfo).port}/`, {
    method: "PUT",
  });
  expect(synced.status).toBe(200);
});

afterAll(async () => {
  syncServer?.closeAllConnections();
  await new Promise((r) => syncServer?.close(r));
  await cluster?.stop();
});

it("never calls an app URL that points at the cluster's ClickHouse, and fails its run saying why", async () => {
  const sent = await sendEvents(cluster.apiUrl, env.eventKeys[0] ?? "", { name: "egress/peek", data: {} });
  expect(sent.status).toBe(200);
  const [run] = await waitForEndedRuns(cluster.apiUrl, sent.body.ids[0], { auth: env.signingKey });
  expect(run?.status).toBe("Failed");
  expect(JSON.stringify(run?.error)).toContain(
    "egress policy: the executor does not call 127.0.0.1, a loopback address; allow it with STEPLINE_EXECUTOR_EGRESS_ALLOW",
  );
  expect(ran).toBe(0);
});

it("refuses an internal gRPC call without the cluster's token, and serves TenantService on the control address only", async () => {
  const fn = { accountId: env.accountId, environmentId: env.id, functionId: "sneaky-peek" };
  const bare = new QueueServiceClient(cluster.queueAddrs[0] ?? "", credentials.createInsecure());
  const refused = await callUnary(bare.getFunctionPauses.bind(bare), { functions: [fn] }).catch(
    (e: unknown) => e,
  );
  expect(refused).toBeInstanceOf(UnauthenticatedError);
  bare.close();
  const queue = createClient(QueueServiceClient, cluster.queueAddrs[0] ?? "");
  expect(await callUnary(queue.getFunctionPauses.bind(queue), { functions: [fn] })).toEqual({
    functions: [{ function: fn, paused: false }],
  });
  queue.close();
  // The data-plane listener does not serve TenantService (which can list every key).
  const dataPlane = createClient(TenantServiceClient, cluster.eventApiAddr);
  await expect(callUnary(dataPlane.listAccounts.bind(dataPlane), {})).rejects.toThrow(
    /does not implement the method/,
  );
  dataPlane.close();
  const control = createClient(TenantServiceClient, cluster.tenantAddr);
  expect((await callUnary(control.listAccounts.bind(control), {})).accounts.length).toBeGreaterThan(0);
  control.close();
});
