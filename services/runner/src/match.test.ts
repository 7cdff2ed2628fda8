import { describe, expect, it } from "vitest";
import type { FunctionIndex } from "./match.js";
import { buildIndex, matchEvent } from "./match.js";
import type { StoredFunction, TriggerDef } from "./model.js";

function stored(id: string, triggers: TriggerDef[], accountId = "acct1"): StoredFunction {
  return {
    accountId,
    appId: "app",
    fn: {
      id,
      name: id,
      triggers,
      url: `http://app/api?fnId=${id}`,
      retries: 0,
      rawJson: "{}",
      cancel: [],
      startTimeoutMs: 0,
      finishTimeoutMs: 0,
      version: "v",
    },
  };
}
const ev = (event: string, expression = ""): TriggerDef => ({ kind: "event", event, expression });

function match(
  indexes: Map<string, FunctionIndex>,
  name: string,
  data: unknown = {},
  env = "envA",
  acct = "acct1",
) {
  return matchEvent(indexes, {
    accountId: acct,
    environmentId: env,
    name,
    event: { name, data, id: "e1", ts: 1 },
  }).map((f) => f.fn.id);
}

describe("matchEvent", () => {
  const indexes = new Map([
    [
      "envA",
      buildIndex([
        stored("exact", [ev("shop/order.placed")]),
        stored("all-shop", [ev("shop/*")]),
        stored("orders", [ev("shop/order.*")]),
        stored("other", [ev("billing/paid")]),
        stored("nightly", [{ kind: "cron", cron: "0 0 * * *" }]),
      ]),
    ],
    ["envB", buildIndex([stored("b-exact", [ev("shop/order.placed")])])],
  ]);

  it("starts functions whose trigger names the event exactly", () => {
    expect(match(indexes, "billing/paid")).toEqual(["other"]);
  });

  it("starts wildcard functions whose prefix the event name has", () => {
    expect(match(indexes, "shop/order.placed")).toEqual(["exact", "all-shop", "orders"]);
    expect(match(indexes, "shop/cart/item.added")).toEqual(["all-shop"]);
    expect(match(indexes, "shops/x")).toEqual([]);
    expect(match(indexes, "shop")).toEqual([]);
  });

  it("never reaches another environment's functions", () => {
    expect(match(indexes, "shop/order.placed", {}, "envB")).toEqual(["b-exact"]);
    expect(match(indexes, "billing/paid", {}, "envB")).toEqual([]);
    expect(match(indexes, "shop/order.placed", {}, "envC")).toEqual([]);
  });

  it("never starts a function synced under another account, even in the same environment id", () => {
    expect(match(indexes, "billing/paid", {}, "envA", "acct2")).toEqual([]);
  });

  it("never starts a function from its cron trigger", () => {
    expect(match(indexes, "0 0 * * *")).toEqual([]);
  });

  it("starts a function once even when several of its triggers match", () => {
    const idx = new Map([["envA", buildIndex([stored("twice", [ev("a/x"), ev("a/*")])])]]);
    expect(match(idx, "a/x")).toEqual(["twice"]);
  });

  it("starts a function with a CEL condition only when the condition is true", () => {
    const idx = new Map([
      [
        "envA",
        buildIndex([
          stored("big", [ev("shop/order", "event.data.amount > 100")]),
          stored("any", [ev("shop/order")]),
        ]),
      ],
    ]);
    expect(match(idx, "shop/order", { amount: 500 })).toEqual(["big", "any"]);
    expect(match(idx, "shop/order", { amount: 5 })).toEqual(["any"]);
    // A missing field is an evaluation error, which does not match.
    expect(match(idx, "shop/order", {})).toEqual(["any"]);
  });

  it("matches a condition-free trigger when another trigger's condition fails", () => {
    const idx = new Map([
      ["envA", buildIndex([stored("f", [ev("a/x", "event.data.ok == true"), ev("a/*")])])],
    ]);
    expect(match(idx, "a/x", { ok: false })).toEqual(["f"]);
  });

  it("reaches internal inngest/ events only through triggers that name them", () => {
    const idx = new Map([
      [
        "envA",
        buildIndex([
          stored("user-all", [ev("app/*")]),
          stored("on-failure", [ev("inngest/function.failed")]),
          stored("fn-events", [ev("inngest/function.*")]),
        ]),
      ],
    ]);
    expect(match(idx, "inngest/function.failed")).toEqual(["on-failure", "fn-events"]);
    expect(match(idx, "inngest/scheduled.timer")).toEqual([]);
  });

  it("starts the target of inngest/function.invoked by id, whatever its triggers, and functions that trigger on it", () => {
    const idx = new Map([
      [
        "envA",
        buildIndex([
          stored("target", []),
          stored("watcher", [ev("inngest/function.invoked")]),
          stored("bystander", [ev("app/*")]),
        ]),
      ],
      ["envB", buildIndex([stored("elsewhere", [])])],
    ]);
    const invoked = (fnId: string) => ({ _inngest: { fn_id: fnId, correlation_id: "run.op" } });
    expect(match(idx, "inngest/function.invoked", invoked("target"))).toEqual(["target", "watcher"]);
    expect(match(idx, "inngest/function.invoked", invoked("watcher"))).toEqual(["watcher"]);
    expect(match(idx, "inngest/function.invoked", invoked("elsewhere"))).toEqual(["watcher"]);
    expect(match(idx, "inngest/function.invoked", invoked("target"), "envA", "acct2")).toEqual([]);
  });
});
