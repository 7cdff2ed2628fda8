import { readFileSync } from "node:fs";
import { loadConfig } from "@stepline/internal/config";
import { describe, expect, it } from "vitest";
import { configSchema } from "./config.js";

describe("config", () => {
  it("documents exactly the variables of the schema, with their defaults, in the README", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    // Tolerates the column padding the formatter adds; a default may be wrapped in backticks.
    const rows = [...readme.matchAll(/^\|\s*`(STEPLINE_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|/gm)].map((m) => [
      m[1] as string,
      (m[2] as string).replace(/^`|`$/g, ""),
    ]);
    const defaults = loadConfig(configSchema, {}) as Record<string, unknown>;
    const expected = Object.keys(configSchema)
      .sort()
      .map((k) => {
        const v = defaults[k];
        return [k, v === "" ? "(empty)" : typeof v === "boolean" ? (v ? "1" : "0") : String(v)];
      });
    expect(rows.sort((a, b) => (a[0] as string).localeCompare(b[0] as string))).toEqual(expected);
  });

  it("refuses a bad knob by name", () => {
    expect(() => loadConfig(configSchema, { STEPLINE_HISTORY_RETRY_MAX_MS: "soon" })).toThrow(
      /STEPLINE_HISTORY_RETRY_MAX_MS/,
    );
  });
});
