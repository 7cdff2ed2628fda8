import { describe, expect, it } from "vitest";
import { HandOffStates } from "./hand-off-states.js";
import type { AdvanceResult, RunState } from "./state.js";

let now = 1_000;
const clock = { now: () => now };

function run(over: Partial<RunState> = {}): RunState {
  return {
    runId: "r1",
    accountId: "a",
    environmentId: "e",
    appId: "app",
    functionId: "fn",
    functionVersion: "1",
    url: "http://app",
    maxAttempts: 3,
    eventsJson: "[{}]",
    createdAtMs: 0,
    cancelOn: [],
    startTimeoutMs: 0,
    finishTimeoutMs: 0,
    traceParent: "",
    status: "running",
    version: 1,
    calls: 1,
    reqVersion: 2,
    disableImmediate: false,
    endedAtMs: 0,
    output: "",
    error: "",
    steps: new Map([["s1", '{"data":1}']]),
    stack: ["s1"],
    pending: new Map(),
    finalized: false,
    ...over,
  };
}

const save = { stepId: "s2", memoJson: '{"data":2}' };
const call = { stepId: "step", saves: [save], planned: 0, disableImmediate: false };
const adv = (over: Partial<AdvanceResult> = {}): AdvanceResult => ({
  callNumber: 2,
  stackLength: 2,
  resolution: "none",
  saved: [true],
  planned: [],
  ...over,
});

describe("HandOffStates", () => {
  it("keeps the state after a sequential save for the next item, once", () => {
    const states = new HandOffStates(clock);
    const before = run();
    states.keepAfter(before, { ...call, reqVersion: 1 }, adv(), "r1:c2");
    const kept = states.take("r1:c2");
    expect(kept?.stack).toEqual(["s1", "s2"]);
    expect([...(kept?.steps ?? [])]).toEqual([
      ["s1", '{"data":1}'],
      ["s2", '{"data":2}'],
    ]);
    expect([kept?.calls, kept?.reqVersion]).toEqual([2, 1]);
    // The run it was made from is left as it was.
    expect(before.stack).toEqual(["s1"]);
    expect(states.take("r1:c2")).toBeUndefined();
  });

  it("keeps nothing when anything but this call may have written to the run", () => {
    const states = new HandOffStates(clock);
    // Another writer saved a step meanwhile (the stack grew by more than this call's saves).
    states.keepAfter(run(), call, adv({ stackLength: 3 }), "x1");
    // An earlier result won a save, so the kept memo would not be the saved one.
    states.keepAfter(run(), call, adv({ saved: [false] }), "x2");
    // Ops are pending: their resolvers write to the run.
    states.keepAfter(run({ pending: new Map([["op", ""]]) }), call, adv(), "x3");
    // The call planned ops, resolved one, or was a planned step's call.
    states.keepAfter(run(), { ...call, planned: 1 }, adv(), "x4");
    states.keepAfter(run(), call, adv({ resolution: "discover" }), "x5");
    states.keepAfter(run(), { ...call, stepId: "p1" }, adv(), "x6");
    // Nothing saved: nothing to move on from.
    states.keepAfter(run(), { ...call, saves: [] }, adv({ saved: [], stackLength: 1 }), "x7");
    expect(states.size()).toBe(0);
  });

  it("forgets stale entries, and the oldest past its entry or byte budget", () => {
    const states = new HandOffStates(clock, 2, 5_000);
    states.keepAfter(run(), call, adv(), "old");
    now += 6_000;
    expect(states.take("old")).toBeUndefined();
    states.keepAfter(run(), call, adv(), "stale");
    now += 6_000;
    // Made later, it sweeps the stale one out.
    states.keepAfter(run(), call, adv(), "fresh");
    expect(states.size()).toBe(1);
    for (const id of ["p", "q", "r"]) states.keepAfter(run(), call, adv(), id);
    expect(states.size()).toBe(2);
    expect(states.take("p")).toBeUndefined();
    expect(states.take("r")?.stack).toEqual(["s1", "s2"]);

    // Each entry holds "[{}]" and two memos: 24 bytes; a budget of 30 keeps one.
    const small = new HandOffStates(clock, 100, 5_000, 30);
    small.keepAfter(run(), call, adv(), "x");
    small.keepAfter(run(), call, adv(), "y");
    expect([small.size(), small.take("x"), small.take("y")?.calls]).toEqual([1, undefined, 2]);
  });
});
