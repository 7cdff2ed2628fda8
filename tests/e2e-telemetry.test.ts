// OpenTelemetry end to end: with an OTLP endpoint configured, one event's run yields one connected
// trace across the five services (event-api, runner, queue, executor, history), with a span per
// step; the runs it starts (a step.invoke's child, a step.sendEvent's listener) join it. A caller's
// unsampled traceparent makes no span anywhere, not even for the events its run sends.

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
  const listener = client.createFunction(
    { id: "listener", triggers: [{ event: "otel/sent" }] },
    async ({ step }: any) => step.run("heard", () => "heard"),
  );
  const traced = client.createFunction(
    { id: "traced", triggers: [{ event: "otel/traced" }] },
    async ({ step }: any) => {
      const a = await step.run("first", () => 1);
      await step.sleep("nap", "1s");
      const fromChild = await step.invoke("call-child", { function: child, data: {} });
      await step.sendEvent("tell", { name: "otel/sent", data: {} });
      return step.run("second", () => ({ a, fromChild }));
    },
  );
  return [child, listener, traced];
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
  it("gives a run one connected trace through every service, a span per step, and the runs it starts", async () => {
    // First a run whose caller did not sample its trace: it must make no span anywhere.
    const unsampledTrace = hex(16);
    const unsampledRun = await runTraced(`00-${unsampledTrace}-${hex(8)}-00`);

    // Then a run that continues a sampled caller's trace.
    const traceId = hex(16);
    const callerSpan = hex(8);
    const runId = await runTraced(`00-${traceId}-${callerSpan}-01`);

    // Spans arrive in batches from five processes (a child span may come before its parent): wait
    // until every part of the run has reported, its history included (the run's final record is
    // written after its last step), and the trace is whole.
    const stepNames = ["first", "nap", "second", "child-step", "heard"];
    const whole = (t: ReceivedSpan[]) => {
      const ids = new Set(t.map((s) => s.spanId));
      return t.filter((s) => !ids.has(s.parentSpanId));
    };
    const spans = await waitFor(
      "the run's trace from all five services, whole",
      () => {
        const t = inTrace(traceId);
        const services = new Set(t.map((s) => s.service));
        const finalWrite = named(t, "history.write").some(
          (s) => s.attributes["stepline.record"] === "run" && s.attributes["stepline.record_id"] === runId,
        );
        const allSteps = stepNames.every((n) =>
          named(t, "step").some((s) => s.attributes["stepline.step_name"] === n),
        );
        const allServices = SERVICE_NAMES.every((n) => services.has(`stepline-${n}`));
        return finalWrite && allSteps && allServices && whole(t).length === 1 ? t : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

    // Connected: the one root is the event's ingest, a child of the caller's span.
    const roots = whole(spans);
    expect(roots.map((s) => `${s.service}/${s.name}`)).toEqual(["stepline-event-api/event.ingest"]);
    expect(roots[0]?.parentSpanId).toBe(callerSpan);

    // The run, its invoked child and the listener of the event it sent each start under a runner
    // span of this trace (the SDK forwards the call's traceparent when it sends the event).
    const triggers = named(spans, "run.trigger");
    expect(triggers.some((s) => s.attributes["stepline.run_id"] === runId)).toBe(true);
    for (const fn of ["otel-app-child", "otel-app-listener"]) {
      expect(
        triggers.filter((s) => s.attributes["stepline.function_id"] === fn),
        fn,
      ).toHaveLength(1);
    }

    // The sleep spans its second; each step.run once, completed, under an executor span.
    const nap = named(spans, "step").find((s) => s.attributes["stepline.step_status"] === "sleeping");
    expect(nap?.attributes["stepline.step_name"]).toBe("nap");
    expect((nap?.endMs ?? 0) - (nap?.startMs ?? 0)).toBeGreaterThanOrEqual(900);
    for (const name of ["first", "second", "child-step", "heard"]) {
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

    // The unsampled caller's run (which sent events and invoked a child too) made no span in any
    // service, and started no trace of its own: every span received is of the sampled trace.
    // Its spans, had there been any, would have been exported before the later run's by each
    // service, and every service has reported the later run's by now.
    expect(receiver.spans().filter((s) => s.attributes["stepline.run_id"] === unsampledRun)).toEqual([]);
    expect(new Set(receiver.spans().map((s) => s.traceId))).toEqual(new Set([traceId]));
  });
});
