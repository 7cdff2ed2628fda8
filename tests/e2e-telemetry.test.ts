// OpenTelemetry end to end: with an OTLP endpoint configured, one event's run yields one connected
// trace across the five services (event-api, runner, queue, executor, history), with a span per
// step, and a step.invoke's child run joins it. A caller's unsampled traceparent makes no spans.

import { randomBytes } from "node:crypto";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "@stepline/internal/otlp-receiver";
import { waitFor } from "@stepline/internal/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendEvents, waitForEndedRuns } from "./support/api.js";
import type { Cluster } from "./support/cluster.js";
import { SERVICE_NAMES, startCluster } from "./support/cluster.js";
import type { SdkApp } from "./support/sdk-app.js";
import { makeClient, serveAndSync } from "./support/sdk-app.js";

function functions(client: any) {
  const child = client.createFunction(
    { id: "child", triggers: [{ event: "otel/child" }] },
    async ({ step }: any) => step.run("child-step", () => "from child"),
  );
  const traced = client.createFunction(
    { id: "traced", triggers: [{ event: "otel/traced" }] },
    async ({ step }: any) => {
      const a = await step.run("first", () => 1);
      await step.sleep("nap", "1s");
      const fromChild = await step.invoke("call-child", { function: child, data: {} });
      return step.run("second", () => ({ a, fromChild }));
    },
  );
  return [child, traced];
}

let receiver: OtlpReceiver;
let cluster: Cluster;
let app: SdkApp;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  cluster = await startCluster({
    name: "otel",
    dev: true,
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_BSP_SCHEDULE_DELAY: "100",
    },
  });
  const opts = { sdk: "v4" as const, id: "otel-app", baseUrl: cluster.apiUrl, checkpointing: true };
  const client = makeClient(opts);
  app = await serveAndSync(opts, client, functions(client));
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
  await receiver?.close();
});

const hex = (bytes: number) => randomBytes(bytes).toString("hex");

/** Runs `otel/traced` from a caller whose own span is `traceparent`; returns the parent run's id. */
async function runTraced(traceparent: string): Promise<string> {
  const res = await sendEvents(
    cluster.apiUrl,
    "test-key",
    { name: "otel/traced", data: {} },
    { traceparent },
  );
  expect(res.status).toBe(200);
  const [ended] = await waitForEndedRuns(cluster.apiUrl, res.body.ids[0], { timeoutMs: 60_000 });
  expect(ended?.status).toBe("Completed");
  expect(ended?.output).toEqual({ a: 1, fromChild: "from child" });
  return ended?.run_id ?? "";
}

const inTrace = (traceId: string) => receiver.spans().filter((s) => s.traceId === traceId);
const named = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name);

describe("OpenTelemetry traces", () => {
  it("gives a run one connected trace through every service, a span per step, and its invoked child", async () => {
    // First a run whose caller did not sample its trace: it must make no span anywhere.
    const unsampledTrace = hex(16);
    const unsampledRun = await runTraced(`00-${unsampledTrace}-${hex(8)}-00`);

    // Then a run that continues a sampled caller's trace.
    const traceId = hex(16);
    const callerSpan = hex(8);
    const runId = await runTraced(`00-${traceId}-${callerSpan}-01`);

    // Spans arrive in batches from five processes: wait until every part of the run has reported,
    // its history included (the run's final record is written after its last step).
    const spans = await waitFor(
      "the run's trace from all five services",
      () => {
        const t = inTrace(traceId);
        const services = new Set(t.map((s) => s.service));
        const finalWrite = named(t, "history.write").some(
          (s) => s.attributes["stepline.record"] === "run" && s.attributes["stepline.record_id"] === runId,
        );
        const allSteps = ["first", "second", "child-step"].every((n) =>
          named(t, "step").some((s) => s.attributes["stepline.step_name"] === n),
        );
        return finalWrite && allSteps && SERVICE_NAMES.every((n) => services.has(`stepline-${n}`))
          ? t
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

    // Connected: the root is the event's ingest, a child of the caller's span; every other span's
    // parent is in the trace.
    const ids = new Set(spans.map((s) => s.spanId));
    const roots = spans.filter((s) => !ids.has(s.parentSpanId));
    expect(roots.map((s) => `${s.service}/${s.name}`)).toEqual(["stepline-event-api/event.ingest"]);
    expect(roots[0]?.parentSpanId).toBe(callerSpan);

    // The run and its invoked child each start under a runner span of this trace.
    const triggers = named(spans, "run.trigger");
    expect(triggers.some((s) => s.attributes["stepline.run_id"] === runId)).toBe(true);
    expect(triggers.some((s) => s.attributes["stepline.function_id"] === "otel-app-child")).toBe(true);

    // Each step once, completed, under an executor span; the app calls and queue waits are there.
    for (const name of ["first", "second", "child-step"]) {
      const steps = named(spans, "step").filter((s) => s.attributes["stepline.step_name"] === name);
      expect(steps, name).toHaveLength(1);
      expect(steps[0]?.attributes["stepline.step_status"]).toBe("completed");
      expect(steps[0]?.service).toBe("stepline-executor");
    }
    expect(named(spans, "app.call").length).toBeGreaterThanOrEqual(2);
    expect(
      named(spans, "app.call").every(
        (s) =>
          s.attributes["http.response.status_code"] === 200 ||
          s.attributes["http.response.status_code"] === 206,
      ),
    ).toBe(true);
    const waits = named(spans, "queue.wait");
    expect(waits.length).toBeGreaterThanOrEqual(named(spans, "executor.item").length);
    for (const s of spans) expect(s.endMs).toBeGreaterThanOrEqual(s.startMs);

    // The unsampled caller's run made no span in any service.
    expect(inTrace(unsampledTrace)).toEqual([]);
    expect(receiver.spans().filter((s) => s.attributes["stepline.run_id"] === unsampledRun)).toEqual([]);
  });
});
