import { describe, expect, it } from "vitest";
import { parseDuration } from "./duration.js";

describe("parseDuration", () => {
  it.each([
    ["", 0],
    ["1s", 1_000],
    ["500ms", 500],
    ["2w1d", 15 * 86_400_000],
    ["1.5h", 5_400_000],
    ["1d2h3m4s", 93_784_000],
    [" 10m ", 600_000],
  ])("reads %j as %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["1 hour", "10x", "h", "1h 30m", "-1s"])("refuses %j", (text) => {
    expect(parseDuration(text)).toBeNull();
  });
});
