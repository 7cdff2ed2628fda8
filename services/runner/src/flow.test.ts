import { ConcurrencyScope } from "@stepline/proto/stepline/queue/v1/queue_service";
import { describe, expect, it } from "vitest";
import { flowLimits, keyHash, priorityOf, runFlow } from "./flow.js";
import type { FunctionDef } from "./model.js";
import { validateFlow } from "./validate-flow.js";

function fnWith(config: Record<string, unknown>): FunctionDef {
  return {
    id: "app-fn",
    name: "fn",
    triggers: [],
    url: "http://127.0.0.1/api",
    retries: 0,
    rawJson: "{}",
    cancel: [],
    startTimeoutMs: 0,
    finishTimeoutMs: 0,
    flow: validateFlow(config, "function app-fn"),
    version: "v",
  };
}

describe("runFlow", () => {
  it("evaluates each key against the event and hashes the value", () => {
    const fn = fnWith({
      concurrency: [{ limit: 2 }, { limit: 1, key: "event.data.user", scope: "env" }],
      throttle: { limit: 1, period: "1s", key: "event.data.user" },
    });
    const a = runFlow(fn, { data: { user: "u1" } });
    const b = runFlow(fn, { data: { user: "u2" } });
    expect(a?.concurrency.map((c) => c.scope)).toEqual([
      ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION,
      ConcurrencyScope.CONCURRENCY_SCOPE_ENVIRONMENT,
    ]);
    expect(a?.concurrency[0]?.keyHash).toBe("");
    expect(a?.concurrency[1]?.keyHash).toMatch(/^[0-9a-f]{16}$/);
    expect(a?.concurrency[1]?.keyHash).not.toBe(b?.concurrency[1]?.keyHash);
    expect(a?.throttled).toBe(true);
    expect(a?.throttleKeyHash).toBe(a?.concurrency[1]?.keyHash);
    expect(runFlow(fnWith({}), { data: {} })).toBeUndefined();
  });

  it("gives equal values one group whatever their CEL type, and unevaluable keys one of their own", () => {
    expect(keyHash("event.data.n", { data: { n: 5 } })).toBe(keyHash("event.data.s", { data: { s: "5" } }));
    expect(keyHash("event.data.missing", { data: {} })).toBe(
      keyHash("event.data.list", { data: { list: [1] } }),
    );
    expect(keyHash("event.data.missing", { data: {} })).not.toBe(keyHash('""', {}));
  });
});

describe("priorityOf", () => {
  it("takes ints and doubles (JSON numbers), truncates, clamps to ±600, and gives 0 otherwise", () => {
    expect(priorityOf("event.data.tier == 'a' ? 120 : 0", { data: { tier: "a" } })).toBe(120);
    expect(priorityOf("event.data.pri", { data: { pri: 30.7 } })).toBe(30);
    expect(priorityOf("event.data.pri", { data: { pri: -5000 } })).toBe(-600);
    expect(priorityOf("event.data.pri", { data: { pri: "high" } })).toBe(0);
    expect(priorityOf("event.data.missing", { data: {} })).toBe(0);
  });
});

describe("flowLimits", () => {
  it("gives the queue each limit's scope and keyedness, and the throttle", () => {
    const fn = fnWith({
      concurrency: [{ limit: 3, key: "event.data.u" }],
      throttle: { limit: 2, period: "1m", burst: 1 },
    });
    expect(flowLimits(fn)).toEqual({
      concurrency: [{ scope: ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION, keyed: true, limit: 3 }],
      throttle: { limit: 2, periodMs: 60_000, burst: 1 },
    });
  });
});
