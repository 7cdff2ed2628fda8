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
    const shown = (k: string) => (String(defaults[k]) === "" ? "empty" : String(defaults[k]));
    for (const k of own) expect(rows.get(k), k).toBe(shown(k));
  });

  it("rejects a bad value by name", () => {
    expect(() => loadExecutorConfig({ STEPLINE_EXECUTOR_CONCURRENCY: "0" })).toThrow(
      /STEPLINE_EXECUTOR_CONCURRENCY/,
    );
  });

  it("reads STEPLINE_QUEUE_GRPC_ADDR as one queue replica or a comma-separated list of them", () => {
    expect(loadExecutorConfig({}).STEPLINE_QUEUE_GRPC_ADDR).toEqual(["127.0.0.1:50053"]);
    expect(loadExecutorConfig({ STEPLINE_QUEUE_GRPC_ADDR: "queue:50053" }).STEPLINE_QUEUE_GRPC_ADDR).toEqual([
      "queue:50053",
    ]);
    expect(
      loadExecutorConfig({ STEPLINE_QUEUE_GRPC_ADDR: "10.0.0.1:50053, 10.0.0.2:50053" })
        .STEPLINE_QUEUE_GRPC_ADDR,
    ).toEqual(["10.0.0.1:50053", "10.0.0.2:50053"]);
    for (const bad of ["", "q1:50053,", "q1:50053,q2", "q1 :50053", "q1:50053,q1:50053"]) {
      expect(() => loadExecutorConfig({ STEPLINE_QUEUE_GRPC_ADDR: bad }), bad).toThrow(
        /STEPLINE_QUEUE_GRPC_ADDR/,
      );
    }
  });

  it("refuses fewer slots than queue replicas, since every replica's stream keeps a credit", () => {
    expect(() =>
      loadExecutorConfig({ STEPLINE_QUEUE_GRPC_ADDR: "q1:1,q2:2,q3:3", STEPLINE_EXECUTOR_CONCURRENCY: "2" }),
    ).toThrow(/STEPLINE_EXECUTOR_CONCURRENCY/);
  });
});
