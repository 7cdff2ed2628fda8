// The durable-primitives end-to-end suite: sleeps, parallel steps, waits, invokes, internal events,
// sent events, crons and cancellation, on a real cluster in dev mode with functions served by the
// official SDK. Each SDK major runs it from its own test file (v3 and v4 cannot share one
// process); the tests live in durable-steps.ts, durable-calls.ts and durable-cancel.ts.

import { callUnary, createClient } from "@stepline/internal/grpc";
import { waitFor } from "@stepline/internal/testing";
import type { Pause } from "@stepline/proto/stepline/executor/v1/executor_service";
import { ExecutorServiceClient } from "@stepline/proto/stepline/executor/v1/executor_service";
import { afterAll, beforeAll, expect } from "vitest";
import { sendEvents } from "./api.js";
import type { Cluster } from "./cluster.js";
import { startCluster } from "./cluster.js";
import type { Trace } from "./durable-app.js";
import { DEV_ENV, defineApp } from "./durable-app.js";
import { callTests } from "./durable-calls.js";
import { cancelTests } from "./durable-cancel.js";
import { stepTests } from "./durable-steps.js";
import type { SdkApp, SdkVersion } from "./sdk-app.js";
import { makeClient, serveAndSync } from "./sdk-app.js";

/** What the test groups share: the cluster (set once it is up), the app's trace, helpers. */
export interface DurableContext {
  sdk: SdkVersion;
  readonly cluster: Cluster;
  trace: Trace;
  /** A fresh tag for one test's events. */
  tag(): string;
  /** Sends `<sdk>/<fnId>` with `data` and returns the event id. */
  send(fnId: string, data: Record<string, unknown>): Promise<string>;
  /** The waits on this suite's event names, through ExecutorService.ListPauses. */
  listPauses(): Promise<Pause[]>;
  waitForPauses(count: number, which: (p: Pause) => boolean, timeoutMs?: number): Promise<unknown>;
}

/** Registers the suite for one SDK major, against a cluster of its own. */
export function durableSuite(sdk: SdkVersion): void {
  let cluster: Cluster;
  let app: SdkApp;
  let executor: ExecutorServiceClient;
  const trace: Trace = {
    count: new Map(),
    spans: new Map(),
    runIds: new Map(),
    failures: new Map(),
    finished: new Map(),
    cancelled: new Map(),
  };
  let other: SdkApp;
  let n = 0;
  const tag = () => `${sdk}-${++n}`;
  const send = async (fnId: string, data: Record<string, unknown>) => {
    const sent = await sendEvents(cluster.apiUrl, "any-key", { name: `${sdk}/${fnId}`, data });
    expect(sent.status).toBe(200);
    return sent.body.ids[0] as string;
  };

  beforeAll(async () => {
    cluster = await startCluster({
      name: `durable${sdk}`,
      dev: true,
      // Few slots on purpose: sleeping and waiting runs must hold none of them.
      env: { STEPLINE_EXECUTOR_BACKOFF_BASE_MS: "50", STEPLINE_EXECUTOR_CONCURRENCY: "4" },
    });
    executor = createClient(ExecutorServiceClient, cluster.executorAddr);
    const id = `durable-${sdk}`;
    const otherId = `durable-${sdk}-other`;
    const client = makeClient({ sdk, id, baseUrl: cluster.apiUrl });
    app = await serveAndSync(
      { sdk, id, baseUrl: cluster.apiUrl },
      client,
      defineApp(sdk, client, trace, otherId),
    );
    // A second app of the environment, whose function the first one invokes.
    const otherClient = makeClient({ sdk, id: otherId, baseUrl: cluster.apiUrl });
    const remote =
      sdk === "v4"
        ? otherClient.createFunction(
            { id: "remote", triggers: [] },
            async ({ event }: any) => `remote got ${event.data.n}`,
          )
        : otherClient.createFunction(
            { id: "remote" },
            { event: `${sdk}/remote` },
            async ({ event }: any) => `remote got ${event.data.n}`,
          );
    other = await serveAndSync({ sdk, id: otherId, baseUrl: cluster.apiUrl }, otherClient, [remote]);
  });

  afterAll(async () => {
    executor?.close();
    await other?.close();
    await app?.close();
    await cluster?.stop();
  });

  /** The waits on this suite's event names, through ExecutorService.ListPauses (dev environment). */
  const listPauses = async () => {
    const queries = [`${sdk}/paid`, `${sdk}/go`].map((eventName) => ({ environmentId: DEV_ENV, eventName }));
    return (await callUnary(executor.listPauses.bind(executor), { queries })).pauses;
  };
  const waitForPauses = (count: number, which: (p: Pause) => boolean, timeoutMs = 20_000) =>
    waitFor(`${count} waits to be indexed`, async () => (await listPauses()).filter(which).length >= count, {
      timeoutMs,
      intervalMs: 100,
    });

  const ctx: DurableContext = {
    sdk,
    get cluster() {
      return cluster;
    },
    trace,
    tag,
    send,
    listPauses,
    waitForPauses,
  };
  stepTests(ctx);
  callTests(ctx);
  cancelTests(ctx);
}
