import { describe, expect, it } from "vitest";
import { uniqueTag, waitFor } from "./testing.js";

describe("waitFor", () => {
  it("returns the first value the probe accepts", async () => {
    let n = 0;
    const got = await waitFor("the third probe", () => (++n >= 3 ? `done at ${n}` : undefined), {
      intervalMs: 1,
    });
    expect(got).toBe("done at 3");
  });

  it("keeps polling while the probe returns false, undefined or null, or throws", async () => {
    const answers: unknown[] = [false, undefined, null, "boom", { ok: true }];
    let i = 0;
    const got = await waitFor(
      "an object",
      async () => {
        const a = answers[i++];
        if (a === "boom") throw new Error("not up yet");
        return a;
      },
      { intervalMs: 1 },
    );
    expect(got).toEqual({ ok: true });
    expect(i).toBe(5);
  });

  it("counts 0 and the empty string as done, since only undefined, null and false mean not yet", async () => {
    await expect(waitFor("zero", () => 0)).resolves.toBe(0);
    await expect(waitFor("empty", async () => "")).resolves.toBe("");
  });

  it("times out with a message naming what it waited for, the last value, and the last error as cause", async () => {
    await expect(
      waitFor("a value that never comes", () => false, { timeoutMs: 50, intervalMs: 5 }),
    ).rejects.toThrow(/timed out after 50 ms waiting for a value that never comes \(last value: false\)/);
    const err = await waitFor(
      "a healthy server",
      () => {
        throw new Error("connection refused");
      },
      { timeoutMs: 30, intervalMs: 5 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /waiting for a healthy server \(last error: Error: connection refused\)/,
    );
    expect(((err as Error).cause as Error).message).toBe("connection refused");
  });
});

describe("uniqueTag", () => {
  it("gives a different tag on every call, of letters, digits and underscores only", () => {
    const tags = Array.from({ length: 1000 }, () => uniqueTag("t"));
    expect(new Set(tags).size).toBe(1000);
    for (const tag of tags) expect(tag).toMatch(/^t_[a-z0-9]+$/);
    expect(uniqueTag()).toMatch(/^[a-z0-9]+$/);
  });
});
