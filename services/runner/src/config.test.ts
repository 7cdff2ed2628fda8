import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configSchema, loadRunnerConfig } from "./config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

/** The README's configuration table: variable -> default as written. */
function readmeTable(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of readme.matchAll(/^\|\s*`(STEPLINE_[A-Z0-9_]+)`\s*\|([^|]*)\|/gm)) {
    rows.set(m[1] as string, (m[2] as string).trim());
  }
  return rows;
}

describe("configuration", () => {
  it("documents every variable of the schema, and no other, in the README table", () => {
    expect([...readmeTable().keys()].sort()).toEqual(Object.keys(configSchema).sort());
  });

  it("documents each variable's real default", () => {
    const defaults = loadRunnerConfig({}) as Record<string, unknown>;
    for (const [name, written] of readmeTable()) {
      const value = defaults[name];
      const shown =
        typeof value === "boolean" ? (value ? "`1`" : "`0`") : value === "" ? "empty" : `\`${value}\``;
      expect(written, name).toBe(shown);
    }
  });

  it("rejects a retry wait longer than the consumer's session allows", () => {
    expect(() => loadRunnerConfig({ STEPLINE_RUNNER_RETRY_MAX_MS: "60000" })).toThrow(
      /STEPLINE_RUNNER_RETRY_MAX_MS/,
    );
  });

  it("rejects a session timeout that a failed call plus the longest retry wait does not fit in", () => {
    // Defaults: 10 s deadline + 10 s wait = 20 s, not under a 20 s session.
    expect(() => loadRunnerConfig({ STEPLINE_RUNNER_SESSION_TIMEOUT_MS: "20000" })).toThrow(
      /STEPLINE_RUNNER_RETRY_MAX_MS.*STEPLINE_RUNNER_SESSION_TIMEOUT_MS/,
    );
    expect(() =>
      loadRunnerConfig({
        STEPLINE_RUNNER_RETRY_MAX_MS: "20000",
        STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS: "10000",
      }),
    ).toThrow(/STEPLINE_RUNNER_SESSION_TIMEOUT_MS/);
  });

  it("accepts a short session timeout when the call deadline and retry waits fit in it", () => {
    const config = loadRunnerConfig({
      STEPLINE_RUNNER_SESSION_TIMEOUT_MS: "10000",
      STEPLINE_RUNNER_SCHEDULE_DEADLINE_MS: "5000",
      STEPLINE_RUNNER_RETRY_MAX_MS: "2000",
    });
    expect(config.STEPLINE_RUNNER_SESSION_TIMEOUT_MS).toBe(10_000);
  });

  it("rejects a session timeout below the broker's minimum of 6 s", () => {
    expect(() => loadRunnerConfig({ STEPLINE_RUNNER_SESSION_TIMEOUT_MS: "5000" })).toThrow(
      /STEPLINE_RUNNER_SESSION_TIMEOUT_MS/,
    );
  });
});
