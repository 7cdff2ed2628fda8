// End-to-end with two queue replicas. The replicas split the 256 virtual shards, and each hands
// out only its own shards' items, to its own Work streams; so the executor must hold a stream to
// every replica, or the runs of accounts on the other replica's shards never start. Production
// mode, because dev mode has a single account (one shard, one replica).

import { shardOf, VIRTUAL_SHARDS } from "@stepline/internal/shards";
import { waitFor } from "@stepline/internal/testing";
import type { Environment } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { globalKeys, shardKeys } from "../services/queue/src/keys.js";
import { preferredShards } from "../services/queue/src/ownership.js";
import type { RunView } from "./support/api.js";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";
import { createTenant } from "./support/tenants.js";

let cluster: Cluster;
let redis: Redis;

beforeAll(async () => {
  cluster = await startCluster({ name: "replicas", dev: false, queueReplicas: 2 });
  redis = new Redis(cluster.redisUrl);
});

afterAll(async () => {
  redis?.disconnect();
  await cluster?.stop();
});

interface Tenant {
  env: Environment;
  /** The queue replica (its member token) that schedules the account's shard. */
  replica: string;
}

describe("runs of accounts whose shards belong to different queue replicas", () => {
  const tenants: Tenant[] = [];
  const apps: SdkApp[] = [];

  beforeAll(async () => {
    const members = await waitFor(
      "both queue replicas to join",
      async () => {
        const m = await redis.zrange(globalKeys("").members, 0, "-1");
        return m.length === 2 ? m : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const shardsOf = new Map(members.map((m) => [m, new Set(preferredShards(m, members, VIRTUAL_SHARDS))]));
    const replicaOf = (accountId: string) => {
      const shard = shardOf(accountId);
      return members.find((m) => shardsOf.get(m)?.has(shard)) ?? "";
    };
    // Eight tenants, and more if needed until each replica schedules at least two of the accounts.
    const onEach = () => Math.min(...members.map((m) => tenants.filter((t) => t.replica === m).length));
    while ((tenants.length < 8 || onEach() < 2) && tenants.length < 40) {
      const env = await createTenant(cluster.tenantAddr, `tenant-${tenants.length}`, "production");
      tenants.push({ env, replica: replicaOf(env.accountId) });
    }
    expect(onEach()).toBeGreaterThanOrEqual(2);
    // A replica that joined second takes its shards at the first one's next renewal tick.
    await waitFor(
      "each account's shard to be held by its replica",
      async () =>
        (await redis.mget(tenants.map((t) => shardKeys("", shardOf(t.env.accountId)).owner))).every(
          (o, i) => o === tenants[i]?.replica,
        ),
      { timeoutMs: 30_000, intervalMs: 100 },
    );

    for (const [i, { env }] of tenants.entries()) {
      const opts = {
        sdk: "v4" as const,
        id: `app-${i}`,
        baseUrl: cluster.apiUrl,
        signingKey: env.signingKey,
      };
      const client = makeClient(opts);
      const fn = client.createFunction(
        { id: "job", triggers: [{ event: "replica/job" }] },
        async ({ event, step }: any) => {
          const doubled = await step.run("double", () => event.data.n * 2);
          const label = await step.run("label", () => `tenant ${i}: ${doubled}`);
          return { label };
        },
      );
      apps.push(await serveAndSync(opts, client, [fn]));
    }
  });

  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
  });

  it("completes every account's runs, whichever replica schedules its shard", async () => {
    const sent = await Promise.all(
      tenants.flatMap(({ env }, i) =>
        [1, 2].map(async (n) => {
          const res = await sendEvents(cluster.apiUrl, env.eventKeys[0] ?? "", {
            name: "replica/job",
            data: { n },
          });
          expect(res.status).toBe(200);
          return { tenant: i, n, eventId: res.body.ids[0] as string, auth: env.signingKey };
        }),
      ),
    );
    const ended = await Promise.all(
      sent.map(async (s) => ({
        ...s,
        runs: await waitForEndedRuns(cluster.apiUrl, s.eventId, { auth: s.auth, timeoutMs: 30_000 }).catch(
          (): RunView[] => [],
        ),
      })),
    );
    // Every run is reported, so a failure names the accounts (and replicas) whose runs stalled.
    const outcome = ended.map((e) => ({
      tenant: e.tenant,
      replica: tenants[e.tenant]?.replica,
      status: e.runs.map((r) => r.status).join(",") || "not ended",
      output: e.runs[0]?.output,
    }));
    expect(outcome).toEqual(
      ended.map((e) => ({
        tenant: e.tenant,
        replica: tenants[e.tenant]?.replica,
        status: "Completed",
        output: { label: `tenant ${e.tenant}: ${e.n * 2}` },
      })),
    );
  });
});
