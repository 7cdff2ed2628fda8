// Shared test suite: drives real SDK apps through AppClient and the interpreter, call by call with
// the memo, exactly as the executor does (without the queue).
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppClient, buildCallBody, signBody, verifySignature } from "./app-client.js";
import type { FixtureApp, Sdk } from "./sdk-app.fixture.js";
import { EVENTS, startFixtureApp, testSigningKey } from "./sdk-app.fixture.js";
import type { Decision } from "./steps.js";
import { interpret } from "./steps.js";

const never = new AbortController().signal;

/**
 * Drives a run to its end by calling the app with the memo, as the executor does but one call at
 * a time: planned steps are called in turn, sleeps end at once, and a discovery call follows once
 * nothing planned is left (the executor's fan-in with request version 2).
 */
async function drive(app: FixtureApp, fnId: string, event: object, client: AppClient, signingKey?: string) {
  const steps = new Map<string, string>();
  const stack: string[] = [];
  let reqVersion = -1;
  let stepId = "step";
  let attempt = 0;
  let disableImmediate = false;
  const planned: string[] = [];
  const decisions: Decision[] = [];
  const reqVersions: number[] = [];
  for (let i = 0; i < 30; i++) {
    const body = buildCallBody({
      runId: "run-1",
      eventsJson: canonicalize([{ ...event, id: "evt-1", ts: 1 }]) as string,
      steps,
      stack,
      attempt,
      maxAttempts: 3,
      reqVersion,
      disableImmediate,
    });
    const outcome = await client.call({
      url: app.fnUrl(fnId),
      stepId,
      body,
      reqVersion,
      signingKey,
      signal: never,
    });
    const { decision, reqVersion: answered } = interpret({
      outcome,
      stepId,
      attempt,
      maxAttempts: 3,
      nowMs: Date.now(),
      backoff: { baseMs: 1, maxMs: 1 },
      random: 0,
      savedStepIds: steps,
    });
    decisions.push(decision);
    if (answered) {
      reqVersion = answered;
      reqVersions.push(answered);
    }
    if (decision.type === "advance") {
      const save = (id: string, memo: string) => {
        if (steps.has(id)) return;
        steps.set(id, memo);
        stack.push(id);
      };
      for (const s of decision.saves) save(s.stepId, s.memoJson);
      if (decision.disableImmediate) disableImmediate = true;
      for (const p of decision.plans) {
        if (p.kind === "sleep") save(p.id, '{"data":null}');
        else planned.push(p.id);
      }
      stepId = planned.shift() ?? "step";
      if (stepId === "step") disableImmediate = false;
      attempt = 0;
    } else if (decision.type === "retry") {
      attempt = decision.attempt;
    } else {
      return { end: decision, decisions, steps, reqVersions };
    }
  }
  throw new Error("run did not end within 30 calls");
}

/**
 * The app-client tests against a real SDK app. One SDK major per test file: v3 and v4 share a
 * global (Symbol.for("inngest:als")) with different shapes, so they cannot run in one process.
 */
export function describeAgainstSdk(sdk: Sdk): void {
  describe(`against a real SDK ${sdk} app`, () => {
    describe("in dev mode", () => {
      let app: FixtureApp;
      const client = new AppClient({ timeoutMs: 10_000, maxResponseBytes: 1 << 20, serverKind: "dev" });
      beforeAll(async () => {
        app = await startFixtureApp(sdk);
      });
      afterAll(async () => {
        await app.close();
        await client.close();
      });

      it("drives a three-step function to completion, running each step exactly once", async () => {
        const { end, decisions } = await drive(app, "three", { name: EVENTS.three, data: { n: 1 } }, client);
        expect(end).toEqual({ type: "complete", outputJson: JSON.stringify({ a: 2, b: 4, c: "4!" }) });
        expect(decisions.map((d) => d.type)).toEqual(["advance", "advance", "advance", "complete"]);
        expect([app.counts.get("a"), app.counts.get("b"), app.counts.get("c")]).toEqual([1, 1, 1]);
      });

      it("retries a throwing step with a higher attempt and then carries on", async () => {
        const { end, decisions } = await drive(app, "flaky", { name: EVENTS.flaky, data: {} }, client);
        expect(end).toEqual({ type: "complete", outputJson: JSON.stringify(["ok", "recovered"]) });
        expect(
          decisions.filter((d) => d.type === "retry").map((d) => (d as { attempt: number }).attempt),
        ).toEqual([1, 2]);
        expect(app.counts.get("first")).toBe(1);
        expect(app.counts.get("second")).toBe(3);
      });

      it("fails the run at once on NonRetriableError", async () => {
        const { end } = await drive(app, "doomed", { name: EVENTS.doomed, data: {} }, client);
        expect(end.type).toBe("fail");
        expect((end as { errorJson: string }).errorJson).toContain("this cannot work");
        expect(app.counts.get("doomed")).toBe(1);
      });

      it("hands a step that failed for good back to the code, which may catch it", async () => {
        const { end, steps } = await drive(app, "caught", { name: EVENTS.caught, data: {} }, client);
        expect(end).toEqual({ type: "complete", outputJson: JSON.stringify({ caught: "broken for good" }) });
        expect(app.counts.get("always-fails")).toBe(3);
        expect([...steps.values()][0]).toContain('"error"');
      });

      it("lets the SDK choose its execution version on the first call and then echoes it", async () => {
        const { end, reqVersions } = await drive(
          app,
          "three",
          { name: EVENTS.three, data: { n: 1 } },
          client,
        );
        expect(end.type).toBe("complete");
        // v4 always executes as version 2; v3 defaults to 1 (2 only with optimizeParallelism).
        const sdkDefault = sdk === "v4" ? 2 : 1;
        expect(reqVersions).toEqual([sdkDefault, sdkDefault, sdkDefault, sdkDefault]);
      });

      it("plans parallel steps together, runs each by its id, then carries on", async () => {
        const { end, decisions } = await drive(app, "parallel", { name: EVENTS.parallel, data: {} }, client);
        expect(end).toEqual({ type: "complete", outputJson: "3" });
        const first = decisions[0];
        expect(first?.type === "advance" && first.plans.map((p) => p.kind)).toEqual(["step", "step"]);
        expect(first?.type === "advance" && first.disableImmediate).toBe(true);
        expect([app.counts.get("p1"), app.counts.get("p2"), app.counts.get("sum")]).toEqual([1, 1, 1]);
      });

      it("plans a sleep of the duration the code asked for, and the code goes on once it ends", async () => {
        const t0 = Date.now();
        const { end, decisions } = await drive(app, "sleeper", { name: EVENTS.sleeper, data: {} }, client);
        const sleep = decisions[0]?.type === "advance" ? decisions[0].plans[0] : undefined;
        expect(sleep?.kind).toBe("sleep");
        expect(sleep?.kind === "sleep" && sleep.untilMs - t0).toBeGreaterThanOrEqual(3_600_000);
        expect(sleep?.kind === "sleep" && sleep.untilMs - Date.now()).toBeLessThanOrEqual(3_600_000);
        expect(end).toEqual({ type: "complete", outputJson: '"woke"' });
      });

      it("counts an unknown function id as a retryable failure", async () => {
        const { end, decisions } = await drive(app, "nope", { name: EVENTS.three, data: {} }, client);
        expect(decisions.map((d) => d.type)).toEqual(["retry", "retry", "fail"]);
        expect(end.type).toBe("fail");
      });
    });

    describe("in production mode", () => {
      let app: FixtureApp;
      const key = testSigningKey();
      const client = new AppClient({ timeoutMs: 10_000, maxResponseBytes: 1 << 20, serverKind: "cloud" });
      beforeAll(async () => {
        app = await startFixtureApp(sdk, { signingKey: key });
      });
      afterAll(async () => {
        await app.close();
        await client.close();
      });

      it("accepts our signed requests, signs its answers, and completes the run", async () => {
        const { end } = await drive(app, "three", { name: EVENTS.three, data: { n: 5 } }, client, key);
        expect(end).toEqual({ type: "complete", outputJson: JSON.stringify({ a: 6, b: 12, c: "12!" }) });
      });

      it("answers 401 to a request signed with another key", async () => {
        const body = buildCallBody({
          runId: "r",
          eventsJson: canonicalize([{ name: EVENTS.three, data: { n: 1 } }]) as string,
          steps: new Map(),
          stack: [],
          attempt: 0,
          maxAttempts: 3,
          reqVersion: -1,
        });
        const outcome = await client.call({
          url: app.fnUrl("three"),
          stepId: "step",
          body,
          reqVersion: -1,
          signingKey: testSigningKey(),
          signal: never,
        });
        expect(outcome.kind).toBe("response");
        expect(outcome.kind === "response" && outcome.response.status).toBe(401);
      });

      it("treats an answer whose signature does not verify as a failed attempt", async () => {
        // The app signs with its key; checking with another key must reject the answer.
        const body = buildCallBody({
          runId: "r",
          eventsJson: canonicalize([{ name: EVENTS.three, data: { n: 1 } }]) as string,
          steps: new Map(),
          stack: [],
          attempt: 0,
          maxAttempts: 3,
          reqVersion: -1,
        });
        const res = await fetch(app.fnUrl("three"), {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-inngest-signature": signBody(body, key, Date.now() / 1000),
          },
          body,
        });
        const text = await res.text();
        const sig = res.headers.get("x-inngest-signature") ?? undefined;
        expect(res.status).toBe(206);
        expect(verifySignature(text, sig, key, Date.now() / 1000)).toBe(true);
        expect(verifySignature(text, sig, testSigningKey(), Date.now() / 1000)).toBe(false);
      });
    });
  });
}
