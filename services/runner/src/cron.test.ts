import { describe, expect, it } from "vitest";
import { cronItemId, parseCron } from "./cron.js";

describe("parseCron", () => {
  it("finds the next tick in UTC by default, and in the zone TZ= names", () => {
    const jan1 = Date.UTC(2026, 0, 1, 0, 0, 0);
    expect(parseCron("0 5 * * *").next(jan1)).toBe(Date.UTC(2026, 0, 1, 5, 0, 0));
    // 05:00 in Paris is 04:00 UTC in winter.
    expect(parseCron("TZ=Europe/Paris 0 5 * * *").next(jan1)).toBe(Date.UTC(2026, 0, 1, 4, 0, 0));
    expect(parseCron("CRON_TZ=America/New_York 0 5 * * *").next(jan1)).toBe(Date.UTC(2026, 0, 1, 10, 0, 0));
  });

  it("takes seconds as a sixth field, nicknames, and always moves strictly past the given moment", () => {
    expect(parseCron("*/2 * * * * *").next(10_000)).toBe(12_000);
    expect(parseCron("*/2 * * * * *").next(10_500)).toBe(12_000);
    expect(parseCron("@hourly").next(Date.UTC(2026, 0, 1, 0, 0, 0))).toBe(Date.UTC(2026, 0, 1, 1, 0, 0));
  });

  it.each([
    ["99 * * * *", "minute"],
    ["* * *", "5 fields"],
    ["TZ=Nowhere/Special 0 5 * * *", "time zone"],
    ["@every 5m", "not supported"],
  ])("rejects %j, saying why", (cron, why) => {
    expect(() => parseCron(cron)).toThrow(new RegExp(why, "i"));
  });
});

describe("cronItemId", () => {
  it("is the same for the same tick of the same chain, and differs when the cron changes", () => {
    expect(cronItemId("env", "app-fn", "0 5 * * *", 1)).toBe(cronItemId("env", "app-fn", "0 5 * * *", 1));
    expect(cronItemId("env", "app-fn", "0 5 * * *", 1)).not.toBe(cronItemId("env", "app-fn", "0 6 * * *", 1));
  });
});
