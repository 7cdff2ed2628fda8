import { readFileSync } from "node:fs";
import { ValidationError } from "@stepline/internal/errors";
import { SYNC_RULES } from "@stepline/internal/sync-rules";
import { describe, expect, it } from "vitest";
import { translateRegister } from "./sync.js";

// Bodies the official SDK (v4.24.0 and v3.54.2, `inngest/node` serve, dev mode) POSTed to
// /fn/register after a PUT to the app, captured from a local capture server.
const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`./testdata/${name}`, import.meta.url), "utf8")) as Record<string, any>;
const REF = { accountId: "ACC", environmentId: "ENV" };

describe.each(["register-v4.json", "register-v3.json"])(
  "translateRegister with the SDK's body %s",
  (file) => {
    const body = fixture(file);
    const req = translateRegister(body, REF);

    it("takes the app id from appName and keeps the tenant, url, sdk and framework", () => {
      expect(req.accountId).toBe("ACC");
      expect(req.environmentId).toBe("ENV");
      expect(req.appId).toBe("capture-app");
      expect(req.url).toBe(body.url);
      expect(req.sdk).toMatch(/^js:v[34]\./);
      expect(req.framework).toBe("nodejs");
    });

    it("translates every function with its triggers, runtime URL and retries", () => {
      expect(req.functions.map((f) => f.id)).toEqual([
        "capture-app-hello",
        "capture-app-flow",
        "capture-app-nightly",
      ]);
      const [hello, flow, nightly] = req.functions;
      expect(hello?.name).toBe("Hello");
      expect(hello?.triggers).toEqual([{ event: "demo/hello", expression: "", cron: "" }]);
      expect(hello?.url).toBe(body.functions[0].steps.step.runtime.url);
      expect(hello?.url).toContain("fnId=capture-app-hello&stepId=step");
      expect(hello?.retries).toBe(SYNC_RULES.defaultRetries);
      expect(flow?.triggers).toEqual([{ event: "demo/flow", expression: "event.data.n > 1", cron: "" }]);
      expect(flow?.retries).toBe(2);
      expect(nightly?.triggers).toEqual([{ event: "", expression: "", cron: "0 3 * * *" }]);
      expect(nightly?.retries).toBe(0);
    });

    it("keeps each function's whole config, flow control included, as raw JSON", () => {
      const flow = req.functions[1];
      expect(JSON.parse(flow?.rawJson ?? "")).toEqual(body.functions[1]);
      expect(JSON.parse(flow?.rawJson ?? "").concurrency).toEqual({ limit: 3, key: "event.data.user" });
    });
  },
);

function failsWith(mutate: (body: any) => void, message: RegExp) {
  const body = structuredClone(fixture("register-v4.json"));
  mutate(body);
  let caught: unknown;
  try {
    translateRegister(body, REF);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ValidationError);
  expect((caught as Error).message).toMatch(message);
}

describe("translateRegister refuses an invalid config, naming the function and field", () => {
  it("refuses a body that is not an object", () => {
    expect(() => translateRegister([], REF)).toThrow(/body must be a JSON object/);
  });

  it("refuses a missing or non-http url", () => {
    failsWith((b) => delete b.url, /^url must be an absolute http\(s\) URL/);
    failsWith((b) => (b.url = "ftp://x/y"), /^url must be/);
  });

  it("refuses a missing appName", () => failsWith((b) => delete b.appName, /^appName is required/));

  it("refuses functions that is not an array", () =>
    failsWith((b) => (b.functions = {}), /^functions must be an array/));

  it("refuses a function without an id", () =>
    failsWith((b) => delete b.functions[1].id, /^functions\[1\]: id is required/));

  it("refuses duplicate function ids", () =>
    failsWith(
      (b) => (b.functions[1].id = b.functions[0].id),
      /^function capture-app-hello: id appears more than once/,
    ));

  it("refuses a non-string name", () =>
    failsWith((b) => (b.functions[0].name = 5), /^function capture-app-hello: name must be a string/));

  it("refuses triggers that are not an array", () =>
    failsWith(
      (b) => (b.functions[0].triggers = { event: "x" }),
      /^function capture-app-hello: triggers must be an array/,
    ));

  it("refuses a trigger with both or neither of event and cron", () => {
    failsWith(
      (b) => (b.functions[0].triggers = [{ event: "a", cron: "* * * * *" }]),
      /^function capture-app-hello: triggers\[0\] must have exactly one of "event" and "cron"/,
    );
    failsWith(
      (b) => (b.functions[0].triggers = [{ event: "a" }, {}]),
      /^function capture-app-hello: triggers\[1\] must have exactly one/,
    );
  });

  it("refuses an empty event name, a non-string expression and an empty cron", () => {
    failsWith(
      (b) => (b.functions[0].triggers = [{ event: "" }]),
      /triggers\[0\]\.event must be a non-empty string/,
    );
    failsWith(
      (b) => (b.functions[0].triggers = [{ event: "a", expression: 1 }]),
      /triggers\[0\]\.expression must be a string/,
    );
    failsWith(
      (b) => (b.functions[2].triggers = [{ cron: "" }]),
      /^function capture-app-nightly: triggers\[0\]\.cron/,
    );
  });

  it("refuses missing steps, a missing runtime URL and a non-http runtime", () => {
    failsWith((b) => delete b.functions[0].steps, /^function capture-app-hello: steps must be an object/);
    failsWith((b) => (b.functions[0].steps = { a: {}, b: {} }), /steps must have a "step" entry/);
    failsWith(
      (b) => delete b.functions[0].steps.step.runtime.url,
      /steps\.step\.runtime\.url must be an absolute/,
    );
    failsWith(
      (b) => (b.functions[0].steps.step.runtime.type = "ws"),
      /steps\.step\.runtime\.type "ws" is not supported/,
    );
  });

  it("refuses retries that are not an integer from 0 to 20", () => {
    failsWith(
      (b) => (b.functions[1].steps.step.retries.attempts = 21),
      /^function capture-app-flow: steps\.step\.retries\.attempts must be an integer from 0 to 20/,
    );
    failsWith(
      (b) => (b.functions[1].steps.step.retries.attempts = 1.5),
      /retries\.attempts must be an integer/,
    );
    failsWith((b) => (b.functions[1].steps.step.retries = 3), /steps\.step\.retries must be an object/);
  });

  it("accepts an app with no functions (a sync that removes them all)", () => {
    const body = fixture("register-v4.json");
    body.functions = [];
    expect(translateRegister(body, REF).functions).toEqual([]);
  });
});
