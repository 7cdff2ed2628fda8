import { describe, expect, it } from "vitest";
import { backoffDelayMs, MAX_RETRY_AFTER_MS, parseRetryAfter } from "./backoff.js";
import type { AppResponse, InterpretInput } from "./steps.js";
import { COMPLETE_OP_ID, INVOKE_PAYLOAD_MAX_BYTES, interpret, requestVersionOf } from "./steps.js";
import { timeFrom } from "./wait-time.js";

const NOW = 1_700_000_000_000;
const SDK = { "x-inngest-sdk": "inngest-js:v4.24.0", "x-inngest-req-version": "2" };

function answer(status: number, body: unknown, headers: Record<string, string> = {}): AppResponse {
  return {
    status,
    headers: { ...SDK, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
}

function run(res: AppResponse, over: Partial<InterpretInput> = {}) {
  return interpret({
    outcome: { kind: "response", response: res },
    stepId: "step",
    attempt: 0,
    maxAttempts: 3,
    nowMs: NOW,
    backoff: { baseMs: 1_000, maxMs: 60_000 },
    random: 0.5,
    savedStepIds: new Set<string>(),
    ...over,
  });
}

const op = (o: Record<string, unknown>) => ({ id: "h1", name: "a", displayName: "a", ...o });

describe("interpreting the app's answer", () => {
  it("completes the run on 200 with the body as output", () => {
    const { decision, reqVersion } = run(answer(200, { a: 1, b: [2] }));
    expect(decision).toEqual({ type: "complete", outputJson: '{"a":1,"b":[2]}' });
    expect(reqVersion).toBe(2);
  });

  it("counts a 2xx without an x-inngest-sdk header as a failed attempt", () => {
    const res = { status: 200, headers: {}, body: "<html>proxy</html>" };
    const { decision } = run(res);
    expect(decision.type).toBe("retry");
    expect(decision.type === "retry" && decision.reason).toContain("x-inngest-sdk");
  });

  it("saves a StepRun result as canonical {data}, planning nothing", () => {
    const { decision } = run(answer(206, [op({ op: "StepRun", data: { z: 1, a: [true, null] } })]));
    expect(decision).toEqual({
      type: "advance",
      plans: [],
      disableImmediate: false,
      saves: [
        {
          stepId: "h1",
          name: "a",
          status: "completed",
          memoJson: '{"data":{"a":[true,null],"z":1}}',
          resultJson: '{"z":1,"a":[true,null]}',
        },
      ],
    });
  });

  it("keeps the SDK's timing of a step (ns since the epoch, and ns long) in ms, and ignores a bad one", () => {
    const timing = { a: String(NOW * 1e6), b: 2_500_000 };
    const { decision } = run(answer(206, [op({ op: "StepRun", data: 1, timing })]));
    expect(decision.type === "advance" && decision.saves[0]?.timing).toEqual({
      startMs: NOW,
      endMs: NOW + 2.5,
    });
    for (const bad of [{ a: "x", b: 1 }, { a: 1e18 }, "soon", { a: -5, b: 1 }]) {
      const r = run(answer(206, [op({ op: "StepRun", data: 1, timing: bad })]));
      expect(
        r.decision.type === "advance" && r.decision.saves[0]?.timing,
        JSON.stringify(bad),
      ).toBeUndefined();
    }
  });

  it("stores null for a StepRun without data", () => {
    const { decision } = run(answer(206, [{ id: "h1", op: "StepRun", name: "a" }]));
    expect(decision.type === "advance" && decision.saves[0]?.memoJson).toBe('{"data":null}');
  });

  it("accepts a single op object instead of an array", () => {
    const { decision } = run(answer(206, op({ op: "StepRun", data: 1 })));
    expect(decision.type).toBe("advance");
  });

  it("retries a StepError with the next attempt after the backoff, naming the step", () => {
    const error = { name: "Error", message: "boom" };
    const { decision } = run(
      answer(206, [op({ op: "StepError", error })], { "x-inngest-no-retry": "false" }),
    );
    expect(decision).toEqual({
      type: "retry",
      attempt: 1,
      runAtMs: NOW + 750,
      reason: "step a failed: boom",
      errorJson: JSON.stringify(error),
      step: { stepId: "h1", name: "a" },
    });
  });

  it("honours retry-after on a StepError", () => {
    const { decision } = run(answer(206, [op({ op: "StepError", error: {} })], { "retry-after": "30" }));
    expect(decision.type === "retry" && decision.runAtMs).toBe(NOW + 30_000);
  });

  it("turns a StepError on the last attempt into a failed step that is saved as {error}", () => {
    const error = { name: "Error", message: "boom" };
    const { decision } = run(answer(206, [op({ op: "StepError", error })]), { attempt: 2 });
    expect(decision).toEqual({
      type: "advance",
      plans: [],
      disableImmediate: false,
      saves: [
        {
          stepId: "h1",
          name: "a",
          status: "failed",
          memoJson: canonical({ error }),
          resultJson: JSON.stringify(error),
        },
      ],
    });
  });

  it("turns a StepError marked no-retry into a failed step at once", () => {
    const { decision } = run(
      answer(206, [op({ op: "StepError", error: {} })], { "x-inngest-no-retry": "true" }),
    );
    expect(decision.type === "advance" && decision.saves[0]?.status).toBe("failed");
  });

  it("saves a StepFailed as {error} and discovers again", () => {
    const error = { name: "NonRetriableError", message: "no" };
    const { decision } = run(answer(206, [op({ op: "StepFailed", error, data: { __serialized: true } })]));
    expect(decision.type === "advance" && decision.saves.map((s) => [s.status, s.memoJson])).toEqual([
      ["failed", canonical({ error })],
    ]);
    expect(decision.type === "advance" && decision.plans).toEqual([]);
  });

  it("plans every StepPlanned step at once and turns immediate execution off when there are several", () => {
    const { decision } = run(
      answer(206, [
        op({ op: "StepPlanned", id: "p1", name: "one" }),
        op({ op: "StepPlanned", id: "p2", name: "two", data: null, opts: { parallelMode: "race" } }),
      ]),
    );
    expect(decision).toEqual({
      type: "advance",
      saves: [],
      disableImmediate: true,
      plans: [
        { kind: "step", id: "p1", name: "a", race: false },
        { kind: "step", id: "p2", name: "a", race: true },
      ],
    });
    const single = run(answer(206, [op({ op: "StepPlanned", id: "p1" })])).decision;
    expect(single.type === "advance" && single.disableImmediate).toBe(false);
  });

  it("plans a Sleep until the time its duration or date names", () => {
    const mixed = run(
      answer(206, [op({ op: "StepPlanned", id: "p1" }), op({ op: "Sleep", id: "z1", name: "1h30m" })]),
    ).decision;
    expect(mixed.type === "advance" && mixed.plans).toEqual([
      { kind: "step", id: "p1", name: "a", race: false },
      { kind: "sleep", id: "z1", name: "a", untilMs: NOW + 90 * 60_000 },
    ]);
    const date = new Date(NOW + 86_400_123).toISOString();
    const until = run(answer(206, [op({ op: "Sleep", name: date })])).decision;
    expect(until.type === "advance" && until.plans[0]).toMatchObject({ untilMs: NOW + 86_400_123 });
  });

  it.each([
    ["", 0],
    ["1d2h3m4s", 93_784_000],
  ])("reads the sleep duration %j", (name, ms) => {
    expect(timeFrom(name, NOW)).toBe(NOW + ms);
  });

  it("plans a waitForEvent with its event, expression and timeout", () => {
    const wait = op({
      op: "WaitForEvent",
      name: "shop/paid",
      opts: { timeout: "2d", if: " async.data.id == event.data.id " },
    });
    const { decision } = run(answer(206, [wait]));
    expect(decision.type === "advance" && decision.plans).toEqual([
      {
        kind: "wait",
        id: "h1",
        name: "a",
        event: "shop/paid",
        expression: "async.data.id == event.data.id",
        timeoutAtMs: NOW + 2 * 86_400_000,
      },
    ]);
  });

  it.each([
    [{ name: "", opts: { timeout: "1h" } }, "needs an event name"],
    [{ name: "x", opts: { timeout: "2y" } }, "not a duration"],
    [{ name: "x", opts: { timeout: "53w" } }, "longer than the maximum of a year"],
    [{ name: "x", opts: { timeout: "1h", if: "async.data.id ==" } }, "is not valid CEL"],
    [
      { name: "x", opts: { timeout: "1h", if: "async.data.a.all(x, x.b.all(y, y.c.exists(z, z > 1)))" } },
      "nests 3 comprehensions",
    ],
  ])("fails the run on a waitForEvent it cannot wait for (%j)", (o, message) => {
    const { decision } = run(answer(206, [op({ op: "WaitForEvent", ...o })]));
    expect(decision.type === "fail" && decision.reason).toContain(message);
  });

  it("plans a step.invoke with the target, payload and timeout (a year when none is given)", () => {
    const invoke = op({
      op: "InvokeFunction",
      opts: {
        function_id: "app-child",
        payload: { data: { n: 1 }, v: "2024-01", user: { id: 1 } },
        timeout: "1h",
      },
    });
    const { decision } = run(answer(206, [invoke]));
    expect(decision.type === "advance" && decision.plans).toEqual([
      {
        kind: "invoke",
        id: "h1",
        name: "a",
        functionId: "app-child",
        payload: { data: { n: 1 }, v: "2024-01", user: { id: 1 } },
        timeoutAtMs: NOW + 3_600_000,
      },
    ]);
    const bare = run(
      answer(206, [op({ op: "InvokeFunction", opts: { function_id: "app-child" } })]),
    ).decision;
    expect(bare.type === "advance" && bare.plans[0]).toMatchObject({
      payload: { data: {} },
      timeoutAtMs: NOW + 365 * 86_400_000,
    });
  });

  it.each([
    [{}, "needs the id of the function"],
    [{ function_id: "f", payload: { data: [1] } }, "data must be a JSON object"],
    [{ function_id: "f", timeout: "forever" }, "not a duration"],
  ])("fails the run on an invoke it cannot make (%j)", (opts, message) => {
    const { decision } = run(answer(206, [op({ op: "InvokeFunction", opts })]));
    expect(decision.type === "fail" && decision.reason).toContain(message);
  });

  it("fails the run on an invoke whose payload would not fit in the event that starts the function", () => {
    const fits = {
      function_id: "f",
      payload: { data: { blob: "x".repeat(INVOKE_PAYLOAD_MAX_BYTES - 100) } },
    };
    expect(run(answer(206, [op({ op: "InvokeFunction", opts: fits })])).decision.type).toBe("advance");
    const opts = { function_id: "f", payload: { data: { blob: "x".repeat(INVOKE_PAYLOAD_MAX_BYTES) } } };
    const { decision } = run(answer(206, [op({ op: "InvokeFunction", opts })]));
    expect(decision.type === "fail" && decision.reason).toContain(
      `at most ${INVOKE_PAYLOAD_MAX_BYTES} fit in the event that starts the function`,
    );
  });

  it("never sleeps into the past: a date gone by resumes at once", () => {
    expect(timeFrom("2001-01-01T00:00:00Z", NOW)).toBe(NOW);
  });

  it.each([
    ["1 hour", "not a duration"],
    ["10x", "not a duration"],
    ["2024-13-45T00:00:00Z", "not a valid date"],
    ["400d", "longer than the maximum of a year"],
  ])("fails the run on a malformed or too long sleep %j", (name, message) => {
    const { decision } = run(answer(206, [op({ op: "Sleep", name })]));
    expect(decision.type).toBe("fail");
    expect(decision.type === "fail" && decision.reason).toContain(message);
  });

  it("does not loop when the app plans the very step it was asked to run", () => {
    const { decision } = run(answer(206, [op({ op: "StepPlanned", id: "p1" })]), { stepId: "p1" });
    expect(decision.type).toBe("retry");
  });

  it("completes the run on RunComplete with its data", () => {
    const { decision } = run(answer(206, [{ id: COMPLETE_OP_ID, op: "RunComplete", data: { ok: 1 } }]));
    expect(decision).toEqual({ type: "complete", outputJson: '{"ok":1}' });
  });

  it.each([
    ["Gateway", "step.fetch"],
    ["SomethingNew", "SomethingNew"],
  ])("fails the run with a clear error on %s (not supported yet)", (code, what) => {
    const { decision } = run(answer(206, [op({ op: code, name: "1h" })]));
    expect(decision.type).toBe("fail");
    expect(decision.type === "fail" && decision.reason).toContain(what);
    expect(decision.type === "fail" && JSON.parse(decision.errorJson).message).toContain(
      "not supported by Stepline yet",
    );
  });

  it("ignores lazy defer ops but still needs a real one", () => {
    const lazy = op({ op: "DeferAdd", id: "d1", opts: {} });
    expect(run(answer(206, [lazy, op({ op: "StepRun", data: 1 })])).decision.type).toBe("advance");
    expect(run(answer(206, [lazy])).decision.type).toBe("retry");
    expect(run(answer(206, [])).decision.type).toBe("retry");
  });

  it("treats step errors on the 'complete' id as function errors", () => {
    const err = { name: "Error", message: "top" };
    const failed = run(answer(206, [{ id: COMPLETE_OP_ID, op: "StepFailed", error: err }])).decision;
    expect(failed).toEqual({ type: "fail", reason: "function failed: top", errorJson: JSON.stringify(err) });
    const errored = run(answer(206, [{ id: COMPLETE_OP_ID, op: "StepError", error: err }])).decision;
    expect(errored.type).toBe("retry");
    expect(errored.type === "retry" && errored.step).toBeUndefined();
  });

  it("retries a 500, with or without x-inngest-no-retry: false", () => {
    const err = { name: "Error", message: "oops", stack: "s" };
    const plain = run(answer(500, err)).decision;
    expect(plain).toEqual({
      type: "retry",
      attempt: 1,
      runAtMs: NOW + 750,
      reason: "app answered 500",
      errorJson: JSON.stringify(err),
    });
    expect(run(answer(500, err, { "x-inngest-no-retry": "false" })).decision.type).toBe("retry");
  });

  it("fails at once on x-inngest-no-retry: true (400 or 500)", () => {
    const err = { name: "NonRetriableError", message: "stop" };
    for (const status of [400, 500]) {
      const { decision } = run(answer(status, err, { "x-inngest-no-retry": "true" }));
      expect(decision).toEqual({
        type: "fail",
        reason: `app answered ${status}`,
        errorJson: JSON.stringify(err),
      });
    }
  });

  it("retries other 4xx answers, and says so clearly for a 401", () => {
    expect(run(answer(404, "not here")).decision.type).toBe("retry");
    const { decision } = run({ status: 401, headers: {}, body: '{"message":"Unauthorized"}' });
    expect(decision.type === "retry" && decision.reason).toContain("signature");
  });

  it("honours retry-after as a date", () => {
    const at = new Date(NOW + 120_000).toUTCString();
    const { decision } = run(answer(500, {}, { "retry-after": at }));
    expect(decision.type === "retry" && decision.runAtMs).toBe(NOW + 120_000);
  });

  it("fails when the attempts are used up, keeping the app's error", () => {
    const err = { name: "Error", message: "still broken" };
    const { decision } = run(answer(500, err), { attempt: 2, maxAttempts: 3 });
    expect(decision).toEqual({
      type: "fail",
      reason: "app answered 500 (after 3 attempts)",
      errorJson: JSON.stringify(err),
    });
  });

  it("wraps an SDK's non-JSON error body in a serialized error", () => {
    const { decision } = run(answer(502, "Bad Gateway"));
    expect(decision.type === "retry" && JSON.parse(decision.errorJson)).toEqual({
      name: "Error",
      message: "app answered 502: Bad Gateway",
    });
  });

  it("never copies the body of an answer that is not from an SDK into the run's error", () => {
    // The URL points at some internal JSON service: its answer must not be readable in the run.
    const secret = { AccessKeyId: "AKIA...", SecretAccessKey: "do-not-leak" };
    for (const res of <AppResponse[]>[
      { status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify(secret) },
      {
        status: 500,
        headers: { "content-type": "application/json; charset=utf-8" },
        body: JSON.stringify(secret),
      },
      { status: 502, headers: {}, body: "Bad Gateway do-not-leak" },
    ]) {
      const { decision } = run(res);
      const errorJson = decision.type === "retry" || decision.type === "fail" ? decision.errorJson : "";
      expect(errorJson).not.toContain("do-not-leak");
      expect(JSON.parse(errorJson).message).toMatch(
        /^app answered \d+ without an x-inngest-sdk header, so not from an SDK \((application\/json|no content type), \d+ bytes, not kept\); check the app's URL$/,
      );
    }
  });

  it("spends an attempt on an op for a step whose saved result the call sent (a plan loop), then fails", () => {
    const savedStepIds = new Set(["h1"]);
    for (const [name, extra] of [
      ["StepPlanned", {}],
      ["StepRun", { data: 1 }],
      ["Sleep", { name: "1s", displayName: "a" }],
    ] as const) {
      const { decision } = run(answer(206, [op({ op: name, ...extra })]), { savedStepIds });
      expect(decision).toMatchObject({ type: "retry", attempt: 1 });
      expect(decision.type === "retry" && decision.reason).toBe(
        `app answered ${name} for step a, whose saved result it was sent: the function must reach the same steps with the same ids on every call`,
      );
    }
    const last = run(answer(206, [op({ op: "StepPlanned" })]), { savedStepIds, attempt: 2 }).decision;
    expect(last).toMatchObject({ type: "fail" });
    expect(last.type === "fail" && JSON.parse(last.errorJson).name).toBe("NonDeterministicStepError");
    // A step the call did not send is new work, whatever else is saved.
    const fresh = run(answer(206, [op({ id: "h2", op: "StepPlanned" })]), { savedStepIds }).decision;
    expect(fresh).toMatchObject({ type: "advance", plans: [{ id: "h2" }] });
  });

  it("retries a malformed 206 and an unexpected 2xx status", () => {
    expect(run(answer(206, "not json")).decision.type).toBe("retry");
    expect(run(answer(206, [{ op: "StepRun" }])).decision.type).toBe("retry");
    expect(run(answer(201, "   ")).decision.type).toBe("retry");
  });

  it("retries a failure before any answer when it is retriable, and fails otherwise", () => {
    const base = {
      stepId: "step",
      attempt: 0,
      maxAttempts: 3,
      nowMs: NOW,
      backoff: { baseMs: 10, maxMs: 10 },
      random: 0,
      savedStepIds: new Set<string>(),
    };
    const retriable = interpret({
      ...base,
      outcome: { kind: "failure", message: "ECONNREFUSED", retriable: true },
    });
    expect(retriable.decision).toEqual({
      type: "retry",
      attempt: 1,
      runAtMs: NOW + 5,
      reason: "ECONNREFUSED",
      errorJson: '{"name":"Error","message":"ECONNREFUSED"}',
    });
    const fatal = interpret({ ...base, outcome: { kind: "failure", message: "too big", retriable: false } });
    expect(fatal.decision.type).toBe("fail");
  });

  it("fails a step whose result cannot be made canonical (a lone surrogate)", () => {
    const { decision } = run(answer(206, `[{"id":"h1","op":"StepRun","name":"a","data":"\\ud800"}]`));
    expect(decision.type).toBe("fail");
  });
});

describe("request version", () => {
  it("echoes only 1 or 2, never 0 or -1", () => {
    expect(requestVersionOf({ "x-inngest-req-version": "2" })).toBe(2);
    expect(requestVersionOf({ "x-inngest-req-version": "1" })).toBe(1);
    expect(requestVersionOf({ "x-inngest-req-version": "0" })).toBeUndefined();
    expect(requestVersionOf({ "x-inngest-req-version": "-1" })).toBeUndefined();
    expect(requestVersionOf({})).toBeUndefined();
  });
});

describe("backoff", () => {
  const policy = { baseMs: 1_000, maxMs: 10_000 };

  it("doubles with each attempt, half fixed and half jitter", () => {
    expect(backoffDelayMs(0, policy, 0)).toBe(500);
    expect(backoffDelayMs(0, policy, 0.999999)).toBe(1_000);
    expect(backoffDelayMs(1, policy, 0)).toBe(1_000);
    expect(backoffDelayMs(2, policy, 1)).toBe(4_000);
  });

  it("is capped", () => {
    expect(backoffDelayMs(20, policy, 1)).toBe(10_000);
    expect(backoffDelayMs(5_000, policy, 1)).toBe(10_000);
  });

  it("parses retry-after as seconds or a date, and ignores garbage", () => {
    expect(parseRetryAfter("5", NOW)).toBe(NOW + 5_000);
    expect(parseRetryAfter("2023-11-14T22:15:00.000Z", NOW)).toBe(Date.parse("2023-11-14T22:15:00.000Z"));
    expect(parseRetryAfter("2000-01-01T00:00:00Z", NOW)).toBe(NOW);
    expect(parseRetryAfter("soon", NOW)).toBeUndefined();
    // At most a day ahead, however far the app asks (seconds, a date, or more than a float holds).
    expect(parseRetryAfter("86401", NOW)).toBe(NOW + MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("2999-01-01T00:00:00Z", NOW)).toBe(NOW + MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("9".repeat(400), NOW)).toBe(NOW + MAX_RETRY_AFTER_MS);
  });
});

function canonical(v: unknown): string {
  // Small values with sorted keys already: JSON.stringify of a key-sorted object is its JCS form.
  return JSON.stringify(v, (_k, val) =>
    val && typeof val === "object" && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val).sort(([a], [b]) => (a < b ? -1 : 1)))
      : val,
  );
}
