// Cron triggers end to end (official SDK v4, two runner replicas): one run per tick, none lost or
// doubled when the runners are killed or everything restarts, and a re-sync that changes or
// removes the cron takes effect at the next tick.

import { waitFor } from "@stepline/internal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Cluster, ServiceName } from "./support/cluster.js";
import { SERVICE_NAMES, startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

/** Runs of the cron function by tick (the scheduled.timer event's ts), and the cron they saw. */
const ticks = new Map<number, Array<{ cron: string; runId: string }>>();

function cronApp(client: any, cron: string | null) {
  const triggers = cron ? [{ cron }] : [{ event: "cron-test/never" }];
  return [
    client.createFunction({ id: "ticker", triggers }, async ({ event, runId }: any) => {
      const list = ticks.get(event.ts) ?? [];
      list.push({ cron: event.data.cron, runId });
      ticks.set(event.ts, list);
      return event.ts;
    }),
  ];
}

let cluster: Cluster;
let app: SdkApp | undefined;
const appOpts = () => ({ sdk: "v4" as const, id: "cron-app", baseUrl: cluster.apiUrl });

/** Serves (or re-serves) the app with `cron` and syncs it. */
async function syncWith(cron: string | null) {
  await app?.close();
  const client = makeClient(appOpts());
  app = await serveAndSync(appOpts(), client, cronApp(client, cron));
}

const tickTimes = () => [...ticks.keys()].sort((a, b) => a - b);
const ticksAfter = (ms: number) => tickTimes().filter((t) => t > ms);

/** Every tick ran exactly once, and consecutive ticks of an every-second cron are 1 s apart. */
function expectEveryTickOnce(from: number, to: number) {
  const seen = tickTimes().filter((t) => t >= from && t <= to);
  for (const t of seen) expect(ticks.get(t)?.length, `runs of tick ${t}`).toBe(1);
  seen.slice(1).forEach((t, i) => {
    expect(t - (seen[i] ?? 0), `gap after ${seen[i]}`).toBe(1_000);
  });
  return seen;
}

beforeAll(async () => {
  cluster = await startCluster({
    name: "cron",
    dev: true,
    runnerReplicas: 2,
    env: {
      STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "50",
      STEPLINE_EXECUTOR_BACKOFF_MAX_MS: "500",
      // Killed runners leave the group once their session times out; keep that short here.
      STEPLINE_RUNNER_SESSION_TIMEOUT_MS: "10000",
      STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS: "5000",
      STEPLINE_RUNNER_RETRY_MAX_MS: "2000",
    },
  });
  await syncWith("* * * * * *");
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

describe("cron triggers with two runner replicas", () => {
  it("starts one run per tick, each tick once, with the cron in an inngest/scheduled.timer event", async () => {
    const start = Date.now();
    await waitFor("four ticks", () => ticksAfter(start).length >= 4, { timeoutMs: 20_000 });
    const seen = expectEveryTickOnce(start, Date.now());
    expect(seen.length).toBeGreaterThanOrEqual(4);
    expect(ticks.get(seen[0] ?? 0)?.[0]?.cron).toBe("* * * * * *");
  });

  it("loses and doubles no tick when every runner is killed and restarted", async () => {
    const before = Date.now();
    await waitFor("a tick", () => ticksAfter(before).length >= 1, { timeoutMs: 10_000 });
    await cluster.kill("runner");
    const down = Date.now();
    await new Promise((r) => setTimeout(r, 3_000)); // the outage being tested, not a wait for a result
    await cluster.restart("runner");
    const up = Date.now();
    await waitFor("ticks after the restart", () => ticksAfter(up + 1_000).length >= 2, { timeoutMs: 30_000 });
    const seen = expectEveryTickOnce(before, Date.now());
    // The ticks of the outage fired late, each once.
    expect(seen.filter((t) => t > down && t < up).length).toBeGreaterThanOrEqual(2);
  });

  it("keeps ticking after every service restarts, without the app syncing again", async () => {
    const services: ServiceName[] = [...SERVICE_NAMES];
    for (const s of services) await cluster.kill(s, "SIGTERM");
    for (const s of services) await cluster.restart(s);
    const up = Date.now();
    await waitFor("ticks after the restart", () => ticksAfter(up).length >= 2, { timeoutMs: 30_000 });
    expectEveryTickOnce(up, Date.now());
  });

  it("follows a re-sync that changes the cron from the next tick, and stops when it is removed", async () => {
    await syncWith("*/2 * * * * *");
    const changed = Date.now();
    // The old chain's pending tick (at most a second away) ends it; then only even seconds.
    await waitFor("even ticks", () => ticksAfter(changed + 1_500).length >= 3, { timeoutMs: 20_000 });
    const later = ticksAfter(changed + 1_500);
    for (const t of later) {
      expect((t / 1_000) % 2, `tick ${t}`).toBe(0);
      expect(ticks.get(t)).toEqual([expect.objectContaining({ cron: "*/2 * * * * *" })]);
    }
    await syncWith(null);
    const removed = Date.now();
    // Proof that no tick follows: a full chain period and more without any.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(ticksAfter(removed + 2_500)).toEqual([]);
  });
});
