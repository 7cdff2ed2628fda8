import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configSchema, loadCliConfig, loadEventApiConfig, trustProxyOf } from "./config.js";

describe("configuration", () => {
  it("documents exactly the variables of the schema in the README's configuration table", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const section = readme.split("## Configuration")[1]?.split("\n## ")[0] ?? "";
    const documented = [...section.matchAll(/^\|\s*`(STEPLINE_[A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(configSchema).sort());
  });

  it("reads STEPLINE_EVENT_API_TRUST_PROXY as none, a hop count, or addresses", () => {
    expect(trustProxyOf("")).toBe(false);
    expect(trustProxyOf("2")).toBe(2);
    expect(trustProxyOf("10.0.0.0/8, 127.0.0.1")).toEqual(["10.0.0.0/8", "127.0.0.1"]);
  });

  it("has working defaults and refuses a bad variable by name", () => {
    const config = loadEventApiConfig({});
    expect(config.STEPLINE_HTTP_PORT).toBe(8288);
    expect(config.STEPLINE_ADMIN_PORT).toBe(8301);
    expect(config.STEPLINE_DEV).toBe(false);
    expect(() => loadEventApiConfig({ STEPLINE_EVENT_API_PRODUCE_TIMEOUT_MS: "soon" })).toThrow(
      /STEPLINE_EVENT_API_PRODUCE_TIMEOUT_MS/,
    );
  });

  it("binds loopback by default in dev mode outside a container, and every interface otherwise", () => {
    const host = (env: NodeJS.ProcessEnv, inContainer: boolean) =>
      loadEventApiConfig(env, inContainer).STEPLINE_EVENT_API_HTTP_HOST;
    expect(host({ STEPLINE_DEV: "1" }, false)).toBe("127.0.0.1");
    expect(host({ STEPLINE_DEV: "1" }, true)).toBe("0.0.0.0");
    expect(host({}, false)).toBe("0.0.0.0");
    expect(host({ STEPLINE_DEV: "1", STEPLINE_EVENT_API_HTTP_HOST: "0.0.0.0" }, false)).toBe("0.0.0.0");
  });

  it("gives the CLI the TenantService (control), ExecutorService and QueueService addresses and the token", () => {
    expect(loadCliConfig({}, () => "")).toEqual({
      addr: "127.0.0.1:50056",
      executorAddr: "127.0.0.1:50054",
      queueAddr: "127.0.0.1:50053",
      token: "",
    });
    expect(
      loadCliConfig(
        {
          STEPLINE_EVENT_API_CONTROL_ADDR: "10.0.0.1:7000",
          STEPLINE_EXECUTOR_GRPC_ADDR: "10.0.0.2:7001",
          STEPLINE_QUEUE_GRPC_ADDR: "10.0.0.3:7002",
          STEPLINE_INTERNAL_TOKEN: "from-the-environment",
        },
        () => "from-the-file",
      ),
    ).toEqual({
      addr: "10.0.0.1:7000",
      executorAddr: "10.0.0.2:7001",
      queueAddr: "10.0.0.3:7002",
      token: "from-the-environment",
    });
    // Without the variable, the token npm start keeps in .stepline/internal-token.
    expect(loadCliConfig({}, () => "from-the-file").token).toBe("from-the-file");
  });
});
