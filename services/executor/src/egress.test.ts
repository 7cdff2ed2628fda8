// The egress policy (egress.ts): which addresses production and dev mode call, the allow-list,
// and the check on resolved names at connect time through a real AppClient and HTTP server.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { egressPolicy } from "@stepline/internal/egress";
import { describe, expect, it } from "vitest";
import { AppClient } from "./app-client.js";

describe("the egress policy", () => {
  it("refuses loopback, private, link-local and metadata addresses in production mode", () => {
    const prod = egressPolicy({ dev: false, allow: "" });
    expect(
      ["127.0.0.1", "::1", "10.1.2.3", "172.20.0.5", "192.168.1.1", "100.64.0.1", "fd12::1", "0.0.0.0"].map(
        (a) => prod.refusal(a),
      ),
    ).toEqual(["loopback", "loopback", "private", "private", "private", "private", "private", "unspecified"]);
    expect(prod.refusal("169.254.169.254")).toBe("link-local");
    expect(prod.refusal("fd00:ec2::254")).toBe("private");
    expect(prod.refusal("::ffff:127.0.0.1")).toBe("loopback");
    expect(prod.refusal("93.184.216.34")).toBeNull();
    expect(prod.refusal("2606:4700::6810:85e5")).toBeNull();
  });

  it("lets dev mode call loopback and private addresses, never link-local or metadata ones", () => {
    const dev = egressPolicy({ dev: true, allow: "" });
    expect([dev.refusal("127.0.0.1"), dev.refusal("172.18.0.3"), dev.refusal("::1")]).toEqual([
      null,
      null,
      null,
    ]);
    expect(dev.refusal("169.254.169.254")).toBe("link-local");
  });

  it("always allows what STEPLINE_EXECUTOR_EGRESS_ALLOW lists: names, addresses and ranges", () => {
    const p = egressPolicy({ dev: false, allow: " app.internal , 10.1.0.0/16, 127.0.0.1 " });
    expect(p.allowsHost("APP.internal")).toBe(true);
    expect([p.refusal("10.1.200.3"), p.refusal("127.0.0.1")]).toEqual([null, null]);
    expect([p.refusal("10.2.0.1"), p.refusal("127.0.0.2")]).toEqual(["private", "loopback"]);
    expect(() => egressPolicy({ dev: false, allow: "10.0.0.0/99" })).toThrow();
  });
});

describe("an AppClient with the production policy", () => {
  it("refuses an app on loopback, by address or by a name that resolves there, without retries", async () => {
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.end("{}");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const call = (client: AppClient, host: string) =>
      client.call({
        url: `http://${host}:${port}/api/inngest?fnId=f&stepId=step`,
        stepId: "step",
        body: "{}",
        reqVersion: -1,
        signal: new AbortController().signal,
      });
    const opts = { timeoutMs: 5_000, maxResponseBytes: 1 << 20, serverKind: "cloud" as const };
    const strict = new AppClient({ ...opts, egress: egressPolicy({ dev: false, allow: "" }) });
    const open = new AppClient({ ...opts, egress: egressPolicy({ dev: false, allow: "127.0.0.1" }) });
    try {
      for (const host of ["127.0.0.1", "localhost"]) {
        const out = await call(strict, host);
        expect(out).toMatchObject({ kind: "failure", retriable: false });
        expect(out.kind === "failure" && out.message).toMatch(
          /^egress policy: the executor does not call (127\.0\.0\.1|localhost \((127\.0\.0\.1|::1)\)), a loopback address; allow it with STEPLINE_EXECUTOR_EGRESS_ALLOW$/,
        );
      }
      expect(hits).toBe(0);
      expect(await call(open, "127.0.0.1")).toMatchObject({ kind: "response", response: { status: 200 } });
      expect(hits).toBe(1);
    } finally {
      await strict.close();
      await open.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
