import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type OtlpReceiver, startOtlpReceiver } from "./otlp-receiver.js";
import { recordSpan, startTelemetry, tracingEnabled, unsampledParent, withSpan } from "./telemetry.js";
import { waitFor } from "./testing.js";

describe("telemetry", () => {
  let receiver: OtlpReceiver;
  let stop: () => Promise<void>;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
    stop = await startTelemetry("telemetry-test", process.env);
  });

  afterAll(async () => {
    await stop();
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    await receiver.close();
  });

  it("exports connected spans across a traceparent handed from one span to the next", async () => {
    expect(tracingEnabled()).toBe(true);
    const root = await withSpan(
      "root",
      { parent: undefined, attributes: { k: "v" } },
      async (span) => span.traceParent,
    );
    expect(root).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const child = await withSpan("child", { parent: root }, async (span) => {
      span.setAttributes({ step: "s1" });
      return span.traceParent;
    });
    const waited = recordSpan("waited", { parent: child, startMs: Date.now() - 50, endMs: Date.now() });
    await expect(
      withSpan("failing", { parent: root }, async () => Promise.reject(new Error("boom"))),
    ).rejects.toThrow("boom");
    // An untraced parent ("") or an unsampled one (flags 00) makes no span at all.
    const unsampled = unsampledParent();
    expect(unsampled).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(unsampledParent()).not.toBe(unsampled);
    for (const parent of ["", unsampled]) {
      expect(await withSpan("untraced", { parent }, async (span) => span.traceParent)).toBe("");
      expect(recordSpan("untraced", { parent, endMs: Date.now() })).toBe("");
    }

    const spans = await waitFor("the four spans at the receiver", () => {
      const got = receiver.spans();
      return got.length >= 4 ? got : undefined;
    });
    const traceId = root.split("-")[1];
    const byName = new Map(spans.map((s) => [s.name, s]));
    expect([...byName.keys()].sort()).toEqual(["child", "failing", "root", "waited"]);
    for (const s of spans) {
      expect(s.traceId).toBe(traceId);
      expect(s.service).toBe("telemetry-test");
    }
    expect(byName.get("root")?.parentSpanId).toBe("");
    expect(byName.get("root")?.attributes.k).toBe("v");
    expect(byName.get("child")?.parentSpanId).toBe(byName.get("root")?.spanId);
    expect(byName.get("child")?.attributes.step).toBe("s1");
    expect(byName.get("waited")?.parentSpanId).toBe(byName.get("child")?.spanId);
    expect(waited.split("-")[2]).toBe(byName.get("waited")?.spanId);
    const w = byName.get("waited");
    expect((w?.endMs ?? 0) - (w?.startMs ?? 0)).toBeGreaterThanOrEqual(40);
    expect(byName.get("failing")?.statusCode).toBe(2);
  });
});
