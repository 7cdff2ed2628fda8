import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configSchema, loadExecutorConfig } from "./config.js";

describe("configuration", () => {
  it("documents every STEPLINE_EXECUTOR_* variable in the README with its default", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const rows = new Map(
      [...readme.matchAll(/^\|\s*`(STEPLINE_EXECUTOR_[A-Z_]+)`\s*\|\s*(\S+)\s*\|/gm)].map((m) => [
        m[1],
        m[2],
      ]),
    );
    const defaults = loadExecutorConfig({}) as Record<string, unknown>;
    // The gRPC addresses are shared variables, documented once for all services.
    const own = Object.keys(configSchema).filter(
      (k) => k.startsWith("STEPLINE_EXECUTOR_") && k !== "STEPLINE_EXECUTOR_GRPC_ADDR",
    );
    expect([...rows.keys()].sort()).toEqual(own.sort());
    for (const k of own) expect(rows.get(k), k).toBe(String(defaults[k]));
  });

  it("rejects a bad value by name", () => {
    expect(() => loadExecutorConfig({ STEPLINE_EXECUTOR_CONCURRENCY: "0" })).toThrow(
      /STEPLINE_EXECUTOR_CONCURRENCY/,
    );
  });
});
