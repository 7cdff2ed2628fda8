// The shared retry helper (retry.ts): the backoff's shape, and what the loop retries and what not.
import { describe, expect, it } from "vitest";
import { ValidationError } from "./errors.js";
import { createLogger } from "./log.js";
import { backoffMs, retry } from "./retry.js";

const log = createLogger("retry-test", "silent");
const fast = { firstMs: 1, maxMs: 4 };

describe("backoffMs", () => {
  it("doubles from the first wait up to the cap, jittered into the upper half", () => {
    const b = { firstMs: 100, maxMs: 1_000 };
    expect([1, 2, 3, 4, 5, 50].map((n) => backoffMs(n, b, 0))).toEqual([50, 100, 200, 400, 500, 500]);
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, b, 0.999_999))).toEqual([100, 200, 400, 800, 1_000]);
    for (let i = 0; i < 100; i++) {
      const d = backoffMs(3, b);
      expect(d).toBeGreaterThanOrEqual(200);
      expect(d).toBeLessThanOrEqual(400);
    }
  });
});

describe("retry", () => {
  it("retries transient failures until the attempt succeeds, calling beforeAttempt between tries", async () => {
    let calls = 0;
    let before = 0;
    const ok = await retry(
      async () => {
        if (++calls < 4) throw new Error("down");
      },
      { log, what: "t", backoff: fast, beforeAttempt: async () => void before++ },
    );
    expect([ok, calls, before]).toEqual([true, 4, 3]);
  });

  it("throws at once what the caller says is not transient", async () => {
    let calls = 0;
    const attempt = async () => {
      calls++;
      throw new ValidationError("bad input");
    };
    const isTransient = (err: unknown) => !(err instanceof ValidationError);
    await expect(retry(attempt, { log, what: "t", backoff: fast, isTransient })).rejects.toThrow("bad input");
    expect(calls).toBe(1);
  });

  it("stops (false) when told to, or when its signal is aborted during a wait", async () => {
    let calls = 0;
    const failing = async () => {
      calls++;
      throw new Error("down");
    };
    expect(await retry(failing, { log, what: "t", backoff: fast, shouldContinue: () => calls < 3 })).toBe(
      false,
    );
    expect(calls).toBe(3);
    const stop = new AbortController();
    const slow = { firstMs: 60_000, maxMs: 60_000 };
    const pending = retry(failing, { log, what: "t", backoff: slow, signal: stop.signal });
    stop.abort();
    expect(await pending).toBe(false);
  });
});
