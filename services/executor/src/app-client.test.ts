import { createHmac } from "node:crypto";
import { getEventListeners } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AppClient,
  buildCallBody,
  firstEventLength,
  signBody,
  signingSecret,
  verifySignature,
} from "./app-client.js";
import { describeAgainstSdk } from "./app-client.suite.fixture.js";
import { testSigningKey } from "./sdk-app.fixture.js";

const never = new AbortController().signal;

describe("request signing", () => {
  it("uses the part of the signing key after its signkey-<env>- prefix as the HMAC secret", () => {
    expect(signingSecret("signkey-prod-abc123")).toBe("abc123");
    expect(signingSecret("signkey-test-00ff")).toBe("00ff");
    expect(signingSecret("plainsecret")).toBe("plainsecret");
  });

  it("signs t=<seconds>&s=HMAC-SHA256(secret, body + t)", () => {
    const body = '{"a":1}';
    const sig = signBody(body, "signkey-test-deadbeef", 1_700_000_000.9);
    const expected = createHmac("sha256", "deadbeef").update(`${body}1700000000`).digest("hex");
    expect(sig).toBe(`t=1700000000&s=${expected}`);
  });

  it("accepts its own signature and rejects a changed body, another key or a missing header", () => {
    const key = testSigningKey();
    const now = Date.now() / 1000;
    const sig = signBody("hello", key, now);
    expect(verifySignature("hello", sig, key, now)).toBe(true);
    expect(verifySignature("hello!", sig, key, now)).toBe(false);
    expect(verifySignature("hello", sig, testSigningKey(), now)).toBe(false);
    expect(verifySignature("hello", undefined, key, now)).toBe(false);
    expect(verifySignature("hello", "t=1", key, now)).toBe(false);
  });

  it("rejects a signature made more than 5 minutes from now, either way (a replayed answer)", () => {
    const key = testSigningKey();
    const now = 1_700_000_000;
    for (const [madeAt, ok] of [
      [now - 300, true],
      [now + 300, true],
      [now - 301, false],
      [now + 301, false],
    ] as const) {
      expect(verifySignature("hello", signBody("hello", key, madeAt), key, now), String(madeAt - now)).toBe(
        ok,
      );
    }
    const forged = signBody("hello", key, now).replace(/^t=\d+/, "t=1e9");
    expect(verifySignature("hello", forged, key, now)).toBe(false);
  });
});

describe("call body", () => {
  const events = [{ name: "x/y", data: { z: [1, { b: 2, a: "é" }], n: 1.5e-7 }, id: "e1", ts: 1 }];
  const eventsJson = canonicalize(events) as string;

  it("is RFC 8785 canonical JSON with the memo, completion-order stack and no ctx.fn_id", () => {
    const steps = new Map([
      ["ff00", canonicalize({ data: { y: 1, x: 2 } }) as string],
      ["0a11", canonicalize({ error: { name: "Error", message: "m" } }) as string],
    ]);
    const body = buildCallBody({
      runId: "r1",
      eventsJson,
      steps,
      stack: ["ff00", "0a11"],
      attempt: 2,
      maxAttempts: 5,
      reqVersion: 2,
    });
    const parsed = JSON.parse(body);
    expect(body).toBe(canonicalize(parsed));
    expect(parsed).toEqual({
      event: events[0],
      events,
      steps: { ff00: { data: { y: 1, x: 2 } }, "0a11": { error: { name: "Error", message: "m" } } },
      ctx: {
        run_id: "r1",
        attempt: 2,
        max_attempts: 5,
        disable_immediate_execution: false,
        use_api: false,
        stack: { stack: ["ff00", "0a11"], current: 2 },
      },
      version: 2,
    });
    expect(parsed.ctx).not.toHaveProperty("fn_id");
  });

  it("writes ctx exactly as a canonicalizer would, with or without checkpointing", () => {
    const text = fc.string({ unit: "binary" });
    fc.assert(
      fc.property(
        fc.record({
          runId: text,
          stack: fc.array(text, { maxLength: 5 }),
          attempt: fc.nat(),
          maxAttempts: fc.nat(),
          disableImmediate: fc.option(fc.boolean(), { nil: undefined }),
          checkpoint: fc.option(fc.record({ functionId: text, queueItemId: text }), { nil: undefined }),
        }),
        (input) => {
          const body = buildCallBody({ ...input, eventsJson: "[{}]", steps: new Map(), reqVersion: 2 });
          const ctx = JSON.parse(body).ctx;
          expect(ctx).toEqual({
            run_id: input.runId,
            attempt: input.attempt,
            max_attempts: input.maxAttempts,
            disable_immediate_execution: input.disableImmediate === true,
            use_api: false,
            stack: { stack: input.stack, current: input.stack.length },
            ...(input.checkpoint
              ? { fn_id: input.checkpoint.functionId, qi_id: input.checkpoint.queueItemId }
              : {}),
          });
          expect(body).toBe(canonicalize(JSON.parse(body)));
        },
      ),
    );
  });

  it("slices the first event out of the events by its kept length, and parses when it has none", () => {
    const input = { runId: "r", steps: new Map(), stack: [], attempt: 0, maxAttempts: 1, reqVersion: 2 };
    const many = canonicalize([{ name: "a", data: { z: [1, "]"] } }, { name: "b" }]) as string;
    const parsedFirst = JSON.parse(buildCallBody({ ...input, eventsJson: many })).event;
    expect(parsedFirst).toEqual({ name: "a", data: { z: [1, "]"] } });
    const length = firstEventLength(JSON.parse(many));
    const sliced = buildCallBody({ ...input, eventsJson: many, firstEventLength: length });
    expect(sliced).toBe(buildCallBody({ ...input, eventsJson: many }));
    // No kept length (an older run), or one that cannot be right: parsed instead.
    for (const wrong of [undefined, 0, many.length + 5]) {
      expect(
        JSON.parse(buildCallBody({ ...input, eventsJson: many, firstEventLength: wrong })).event,
      ).toEqual(parsedFirst);
    }
  });

  it("is canonical for an empty memo too", () => {
    const body = buildCallBody({
      runId: "r",
      eventsJson,
      steps: new Map(),
      stack: [],
      attempt: 0,
      maxAttempts: 1,
      reqVersion: -1,
    });
    expect(body).toBe(canonicalize(JSON.parse(body)));
  });

  it("carries the same request version as the header: -1 until the SDK answered, never 0", () => {
    const versionOf = (reqVersion: number) =>
      JSON.parse(
        buildCallBody({
          runId: "r",
          eventsJson,
          steps: new Map(),
          stack: [],
          attempt: 0,
          maxAttempts: 1,
          reqVersion,
        }),
      ).version;
    expect([-1, 0, 1, 2, 7].map(versionOf)).toEqual([-1, -1, 1, 2, -1]);
  });
});

describe("answers", () => {
  it("counts an unsigned answer as a failed attempt in production mode, caps the size, and maps timeouts", async () => {
    const server = createServer((req, res) => {
      const path = req.url ?? "";
      req.resume();
      req.on("end", () => {
        if (path.includes("big")) res.writeHead(200, { "x-inngest-sdk": "x" }).end("x".repeat(5_000));
        else if (path.includes("hang")) setTimeout(() => res.end(), 2_000);
        else res.writeHead(200, { "x-inngest-sdk": "inngest-js:v4.24.0" }).end('"forged"');
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new AppClient({ timeoutMs: 300, maxResponseBytes: 1_000, serverKind: "cloud" });
    const call = (path: string, signingKey?: string) =>
      client.call({
        url: `${base}/${path}?fnId=f&stepId=step`,
        stepId: "step",
        body: "{}",
        reqVersion: -1,
        signingKey,
        signal: never,
      });
    try {
      const unsigned = await call("ok", testSigningKey());
      expect(unsigned).toEqual({
        kind: "failure",
        message: expect.stringContaining("x-inngest-signature"),
        retriable: true,
      });
      expect((await call("ok")).kind).toBe("response");
      expect(await call("big")).toMatchObject({ kind: "failure", retriable: false });
      expect(await call("hang")).toEqual({
        kind: "failure",
        message: "app did not answer within 300 ms",
        retriable: true,
      });
    } finally {
      await client.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it("throws when the caller aborts a call, and leaves no listener on the caller's signal", async () => {
    const server = createServer((req, res) => {
      req.resume();
      if (req.url?.startsWith("/hang")) setTimeout(() => res.end(), 2_000);
      else req.on("end", () => res.writeHead(200, { "x-inngest-sdk": "x" }).end("null"));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new AppClient({ timeoutMs: 5_000, maxResponseBytes: 1_000, serverKind: "dev" });
    const lease = new AbortController();
    const call = (path: string, signal: AbortSignal) =>
      client.call({
        url: `${base}/${path}?fnId=f&stepId=step`,
        stepId: "step",
        body: "{}",
        reqVersion: -1,
        signal,
      });
    try {
      for (let i = 0; i < 20; i++) expect((await call("ok", lease.signal)).kind).toBe("response");
      expect(getEventListeners(lease.signal, "abort")).toHaveLength(0);
      const hanging = call("hang", lease.signal);
      setTimeout(() => lease.abort(new Error("lease lost")), 50);
      // With the caller's reason: the caller tells a lost lease from a shutdown by it.
      await expect(hanging).rejects.toThrow("lease lost");
      expect(getEventListeners(lease.signal, "abort")).toHaveLength(0);
      // A signal aborted before the call starts aborts it at once.
      await expect(call("ok", lease.signal)).rejects.toThrow("lease lost");
    } finally {
      await client.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it("sends the request version, server kind and step id headers, never a version of 0", async () => {
    const seen: Array<Record<string, string | string[] | undefined>> = [];
    const server = createServer((req, res) => {
      seen.push({ ...req.headers, url: req.url });
      req.resume();
      req.on("end", () => res.writeHead(200, { "x-inngest-sdk": "x" }).end("null"));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api?fnId=f&stepId=step`;
    const client = new AppClient({ timeoutMs: 1_000, maxResponseBytes: 1_000, serverKind: "dev" });
    try {
      for (const reqVersion of [-1, 0, 1, 2]) {
        await client.call({ url, stepId: "abc", body: "{}", reqVersion, signal: never });
      }
      expect(seen.map((h) => h["x-inngest-req-version"])).toEqual(["-1", "-1", "1", "2"]);
      expect(seen[0]).toMatchObject({
        "x-inngest-server-kind": "dev",
        "x-inngest-step-id": "abc",
        "content-type": "application/json",
        url: "/api?fnId=f&stepId=abc",
      });
      expect(seen[0]).not.toHaveProperty("x-inngest-signature");
    } finally {
      await client.close();
      server.closeAllConnections();
      server.close();
    }
  });
});

describeAgainstSdk("v4");
