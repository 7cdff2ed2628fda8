import { ValidationError } from "@stepline/internal/errors";
import { describe, expect, it } from "vitest";
import type { SyncInput } from "./model.js";
import { canonicalJson, validateSync } from "./validate.js";

type FnInput = SyncInput["functions"][number];

function fn(over: Partial<FnInput> = {}): FnInput {
  return {
    id: "app-fn",
    name: "fn",
    triggers: [{ event: "app/hello", expression: "", cron: "" }],
    url: "http://127.0.0.1:3000/api/inngest?fnId=app-fn&stepId=step",
    retries: 4,
    rawJson: "",
    ...over,
  };
}

function sync(functions: FnInput[], over: Partial<SyncInput> = {}): SyncInput {
  return {
    accountId: "acct1",
    environmentId: "env1",
    appId: "app",
    url: "http://127.0.0.1:3000/api/inngest",
    sdk: "js:v4.24.0",
    framework: "nodejs",
    functions,
    ...over,
  };
}

function errorOf(input: SyncInput): string {
  try {
    validateSync(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as Error).message;
  }
  throw new Error("expected a ValidationError");
}

const trig = (event: string, expression = "") => ({ event, expression, cron: "" });

describe("validateSync", () => {
  it("accepts a function as the SDK sends it and normalises its raw config", () => {
    const out = validateSync(
      sync([fn({ rawJson: '{"name":"fn","id":"app-fn","triggers":[{"event":"app/hello"}]}' })]),
    );
    expect(out.functions).toHaveLength(1);
    const f = out.functions[0];
    expect(f?.triggers).toEqual([{ kind: "event", event: "app/hello", expression: "" }]);
    expect(f?.rawJson).toBe('{"id":"app-fn","name":"fn","triggers":[{"event":"app/hello"}]}');
    expect(f?.version).toMatch(/^[0-9a-f]{16}$/);
  });

  it("gives equal configs the same version whatever their key order, and changed configs another", () => {
    const v = (over: Partial<FnInput>) => validateSync(sync([fn(over)])).functions[0]?.version;
    expect(v({ rawJson: '{"a":1,"b":{"c":2,"d":3}}' })).toBe(v({ rawJson: '{"b":{"d":3,"c":2},"a":1}' }));
    expect(v({})).not.toBe(v({ retries: 3 }));
    expect(v({})).not.toBe(v({ triggers: [trig("app/other")] }));
    expect(v({})).not.toBe(v({ rawJson: '{"concurrency":1}' }));
  });

  it("names the function and the field in every error", () => {
    expect(errorOf(sync([fn({ triggers: [trig("a*b")] })]))).toBe(
      `function app-fn: triggers[0].event may use '*' only as its whole last segment, after '/' or '.' (like "app/*")`,
    );
    expect(errorOf(sync([fn({ retries: 21 })]))).toBe(
      "function app-fn: retries must be an integer from 0 to 20",
    );
  });

  it("rejects an empty or unsafe function id", () => {
    expect(errorOf(sync([fn({ id: "" })]))).toBe("functions[0]: id must be non-empty");
    expect(errorOf(sync([fn({ id: "app:fn" })]))).toMatch(/^function app:fn: id must be/);
    expect(errorOf(sync([fn({ id: "app {fn}" })]))).toMatch(/id must be/);
    expect(errorOf(sync([fn({ id: "x".repeat(257) })]))).toMatch(/id must be 1-256/);
  });

  it("rejects a function id that appears twice in one sync", () => {
    expect(errorOf(sync([fn(), fn()]))).toBe("function app-fn: id appears more than once in this sync");
  });

  it("rejects an empty name", () => {
    expect(errorOf(sync([fn({ name: "" })]))).toBe(
      "function app-fn: name must be 1-256 printable characters",
    );
  });

  it("requires an absolute http(s) url for the function and the app", () => {
    for (const url of ["", "/api/inngest", "ftp://host/x", "localhost:3000/api", "http://"]) {
      expect(errorOf(sync([fn({ url })]))).toMatch(/^function app-fn: url must be an absolute http\(s\) URL/);
    }
    expect(
      validateSync(sync([fn({ url: "https://example.com/api/inngest?fnId=app-fn&stepId=step" })])),
    ).toBeTruthy();
    expect(errorOf(sync([fn()], { url: "nope" }))).toBe("app app: url must be an absolute http(s) URL");
  });

  it("accepts a function without triggers, as SDK v4 sends an invoke-only function", () => {
    expect(validateSync(sync([fn({ triggers: [] })])).functions[0]?.triggers).toEqual([]);
  });

  it("accepts at most ten triggers", () => {
    const many = Array.from({ length: 11 }, (_, i) => trig(`app/e${i}`));
    expect(errorOf(sync([fn({ triggers: many })]))).toBe("function app-fn: triggers may hold at most 10");
  });

  it("requires each trigger to set exactly one of event or cron", () => {
    expect(errorOf(sync([fn({ triggers: [{ event: "", expression: "", cron: "" }] })]))).toBe(
      "function app-fn: triggers[0] must set exactly one of event or cron",
    );
    expect(
      errorOf(
        sync([fn({ triggers: [trig("app/a"), { event: "app/b", expression: "", cron: "* * * * *" }] })]),
      ),
    ).toBe("function app-fn: triggers[1] must set exactly one of event or cron");
  });

  it("accepts wildcards only as a last segment after '/' or '.'", () => {
    for (const event of ["app/*", "app/user.*", "inngest/function.*"]) {
      expect(validateSync(sync([fn({ triggers: [trig(event)] })])).functions[0]?.triggers[0]).toMatchObject({
        event,
      });
    }
    for (const event of ["*", "/*", "app*", "app/*/x", "app/**", "app/x*", "a/*b"]) {
      expect(errorOf(sync([fn({ triggers: [trig(event)] })]))).toMatch(
        /triggers\[0\]\.event may use '\*' only/,
      );
    }
  });

  it("rejects event names with control characters or surrounding spaces", () => {
    expect(errorOf(sync([fn({ triggers: [trig(" app/a")] })]))).toMatch(
      /^function app-fn: triggers\[0\]\.event must be/,
    );
    expect(errorOf(sync([fn({ triggers: [trig("app/\na")] })]))).toMatch(/triggers\[0\]\.event must be/);
  });

  it("keeps a valid CEL expression and rejects an invalid one", () => {
    const ok = validateSync(sync([fn({ triggers: [trig("app/a", "event.data.amount > 10")] })]));
    expect(ok.functions[0]?.triggers[0]).toEqual({
      kind: "event",
      event: "app/a",
      expression: "event.data.amount > 10",
    });
    expect(errorOf(sync([fn({ triggers: [trig("app/a", "event.data.amount >")] })]))).toMatch(
      /^function app-fn: triggers\[0\]\.expression is not valid CEL: /,
    );
    // Too costly to evaluate on every event: refused like a syntax error.
    expect(
      errorOf(sync([fn({ triggers: [trig("app/a", "event.data.a.all(x, x.all(y, y.exists(z, z > 1)))")] })])),
    ).toMatch(/^function app-fn: triggers\[0\]\.expression is not valid CEL: .*nests 3 comprehensions/);
  });

  it("reads cancelOn and timeouts from the raw config", () => {
    const raw = JSON.stringify({
      cancel: [
        { event: "shop/cancelled", if: "event.data.id == async.data.id", timeout: "1h" },
        { event: "shop/closed" },
      ],
      timeouts: { start: "10s", finish: "2m" },
    });
    const f = validateSync(sync([fn({ rawJson: raw })])).functions[0];
    expect(f?.cancel).toEqual([
      { event: "shop/cancelled", expression: "event.data.id == async.data.id", timeoutMs: 3_600_000 },
      { event: "shop/closed", expression: "", timeoutMs: 0 },
    ]);
    expect([f?.startTimeoutMs, f?.finishTimeoutMs]).toEqual([10_000, 120_000]);
    const none = validateSync(sync([fn()])).functions[0];
    expect([none?.cancel, none?.startTimeoutMs, none?.finishTimeoutMs]).toEqual([[], 0, 0]);
  });

  it.each([
    [{ cancel: [{ event: "" }] }, "function app-fn: cancel[0].event must be 1-256 characters"],
    [{ cancel: [{ event: "x", if: "event.data ==" }] }, "function app-fn: cancel[0].if is not valid CEL"],
    [
      { cancel: [{ event: "x", timeout: "soon" }] },
      'function app-fn: cancel[0].timeout must be a duration like "30s"',
    ],
    [{ cancel: { event: "x" } }, "function app-fn: cancel must be a list"],
    [{ timeouts: { finish: "2y" } }, "function app-fn: timeouts.finish must be a duration"],
    [{ timeouts: { start: "400d" } }, "function app-fn: timeouts.start must be at most a year"],
  ])("rejects a bad cancelOn or timeouts config (%j), naming the function and field", (config, message) => {
    expect(errorOf(sync([fn({ rawJson: JSON.stringify(config) })]))).toContain(message);
  });

  it("stores valid cron triggers and rejects invalid ones with croner's reason", () => {
    for (const cron of ["0 5 * * *", "*/15 * * * * *", "TZ=Europe/Paris 0 12 * * 5", "@hourly"]) {
      expect(
        validateSync(sync([fn({ triggers: [{ event: "", expression: "", cron }] })])).functions[0]
          ?.triggers[0],
      ).toEqual({
        kind: "cron",
        cron,
      });
    }
    expect(errorOf(sync([fn({ triggers: [{ event: "", expression: "", cron: "every day" }] })]))).toMatch(
      /^function app-fn: triggers\[0\]\.cron "every day" is not a valid cron .*: a cron expression has 5 fields/,
    );
    expect(
      errorOf(sync([fn({ triggers: [{ event: "", expression: "", cron: "TZ=Mars/Olympus 0 5 * * *" }] })])),
    ).toMatch(/triggers\[0\]\.cron .* is not a valid cron .*time zone/i);
    expect(errorOf(sync([fn({ triggers: [{ event: "", expression: "x", cron: "* * * * *" }] })]))).toBe(
      "function app-fn: triggers[0].expression applies to event triggers only",
    );
  });

  it("accepts retries from 0 to 20 only", () => {
    for (const retries of [0, 20])
      expect(validateSync(sync([fn({ retries })])).functions[0]?.retries).toBe(retries);
    for (const retries of [-1, 21, 1.5]) expect(errorOf(sync([fn({ retries })]))).toMatch(/retries must be/);
  });

  it("rejects a raw config that is not a JSON object", () => {
    expect(errorOf(sync([fn({ rawJson: "{" })]))).toBe("function app-fn: config is not valid JSON");
    expect(errorOf(sync([fn({ rawJson: "[1]" })]))).toBe("function app-fn: config must be a JSON object");
  });

  it("rejects environment and account ids that would break a Redis hash tag", () => {
    expect(errorOf(sync([fn()], { environmentId: "env}x" }))).toMatch(/^environment_id must be/);
    expect(errorOf(sync([fn()], { environmentId: "" }))).toMatch(/^environment_id must be/);
    expect(errorOf(sync([fn()], { accountId: "a b" }))).toMatch(/^account_id must be/);
    expect(errorOf(sync([fn()], { appId: "" }))).toMatch(/^app_id must be/);
  });

  it("accepts an app with no functions (a sync that removes them all)", () => {
    expect(validateSync(sync([])).functions).toEqual([]);
  });
});

describe("canonicalJson", () => {
  it("sorts keys at every level and keeps array order", () => {
    expect(canonicalJson({ b: [{ y: 1, x: 2 }], a: "s" })).toBe('{"a":"s","b":[{"x":2,"y":1}]}');
  });
});
