import { ValidationError } from "@stepline/internal/errors";
import { describe, expect, it } from "vitest";
import { validateFlow } from "./validate-flow.js";

const AT = "function app-fn";

function errorOf(config: Record<string, unknown>): string {
  try {
    validateFlow(config, AT);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as Error).message;
  }
  throw new Error("expected a ValidationError");
}

describe("validateFlow", () => {
  it("reads every option in the shapes the SDK sends", () => {
    const flow = validateFlow(
      {
        concurrency: [{ limit: 5 }, { limit: 1, key: "event.data.user", scope: "account" }],
        throttle: { limit: 2, period: "6s", burst: 1, key: "event.data.user" },
        rateLimit: { limit: 10, period: "1h" },
        debounce: { period: "5s", timeout: "1m", key: "event.data.id" },
        batchEvents: { maxSize: 100, timeout: "5s", if: "event.data.ok == true" },
        priority: { run: "event.data.tier == 'a' ? 120 : 0" },
        singleton: { mode: "cancel", key: "event.data.id" },
        idempotency: "event.data.orderId",
      },
      AT,
    );
    expect(flow).toEqual({
      concurrency: [
        { limit: 5, scope: "fn", key: "" },
        { limit: 1, scope: "account", key: "event.data.user" },
      ],
      throttle: { limit: 2, periodMs: 6_000, burst: 1, key: "event.data.user" },
      rateLimit: { limit: 10, periodMs: 3_600_000, key: "" },
      debounce: { periodMs: 5_000, timeoutMs: 60_000, key: "event.data.id" },
      batchEvents: { maxSize: 100, timeoutMs: 5_000, key: "", if: "event.data.ok == true" },
      priority: "event.data.tier == 'a' ? 120 : 0",
      singleton: { mode: "cancel", key: "event.data.id" },
      idempotency: "event.data.orderId",
    });
    expect(validateFlow({ concurrency: 3 }, AT).concurrency).toEqual([{ limit: 3, scope: "fn", key: "" }]);
    expect(
      validateFlow({ concurrency: { limit: 2, scope: "env", key: '"openai"' } }, AT).concurrency,
    ).toEqual([{ limit: 2, scope: "env", key: '"openai"' }]);
    expect(validateFlow({}, AT)).toMatchObject({
      concurrency: [],
      throttle: null,
      priority: "",
      idempotency: "",
    });
  });

  it("rejects what Stepline cannot enforce, naming the function and the field", () => {
    expect(errorOf({ concurrency: [{ limit: 1 }, { limit: 2 }, { limit: 3 }] })).toBe(
      "function app-fn: concurrency may hold at most 2 limits",
    );
    expect(errorOf({ concurrency: { limit: -1 } })).toBe(
      "function app-fn: concurrency.limit must be an integer from 0 to 100000, got -1",
    );
    expect(errorOf({ concurrency: [{ limit: 1, scope: "world" }] })).toBe(
      'function app-fn: concurrency[0].scope must be one of "fn", "env" or "account", got "world"',
    );
    expect(errorOf({ concurrency: [{ limit: 1, key: "event.data.(" }] })).toMatch(
      /^function app-fn: concurrency\[0\]\.key is not valid CEL: /,
    );
    expect(errorOf({ throttle: { limit: 0, period: "1s" } })).toBe(
      "function app-fn: throttle.limit must be an integer from 1 to 10000, got 0",
    );
    expect(errorOf({ throttle: { limit: 1, period: "8d" } })).toBe(
      'function app-fn: throttle.period must be from 1s to 7d, got "8d"',
    );
    expect(errorOf({ throttle: { limit: 1, period: "soon" } })).toBe(
      'function app-fn: throttle.period must be a duration like "30s", "10m" or "2h", got "soon"',
    );
    expect(errorOf({ rateLimit: { limit: 1, period: "2d" } })).toBe(
      'function app-fn: rateLimit.period must be from 1s to 1d, got "2d"',
    );
    expect(errorOf({ debounce: { period: "1m", timeout: "10s" } })).toBe(
      "function app-fn: debounce.timeout must not be shorter than its period",
    );
    expect(errorOf({ batchEvents: { maxSize: 10, timeout: "2m" } })).toBe(
      'function app-fn: batchEvents.timeout must be from 1s to 1m, got "2m"',
    );
    expect(errorOf({ priority: { run: "1 +" } })).toMatch(
      /^function app-fn: priority\.run is not valid CEL: /,
    );
    expect(errorOf({ singleton: { mode: "queue" } })).toBe(
      'function app-fn: singleton.mode must be "skip" or "cancel", got "queue"',
    );
    expect(errorOf({ idempotency: 5 })).toBe(
      "function app-fn: idempotency must be a CEL expression of at most 4096 characters",
    );
    expect(errorOf({ throttle: "fast" })).toBe("function app-fn: throttle must be an object");
  });
});
