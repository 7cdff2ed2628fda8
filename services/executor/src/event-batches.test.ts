import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import { describe, expect, it } from "vitest";
import { batchingEventSender } from "./event-batches.js";
import type { SendEventsJson } from "./internal-events.js";

/** A SendEventsJson whose calls stay in flight until the test settles them. */
function fakeSend() {
  const calls: Array<{
    env: string;
    trace: string;
    names: string[];
    settle(err?: Error): void;
  }> = [];
  const send: SendEventsJson = (_acct, env, eventsJson, trace) =>
    new Promise<void>((resolve, reject) => {
      const names = eventsJson.map((j) => (JSON.parse(j) as { name: string }).name);
      calls.push({ env, trace, names, settle: (err) => (err ? reject(err) : resolve()) });
    });
  return { send, calls };
}

const ev = (name: string) => ({ name, data: {} });
const settled = async (p: Promise<void>) =>
  p.then(
    () => "ok",
    (e: Error) => e.name,
  );
const tick = () => new Promise((r) => setImmediate(r));

describe("batchingEventSender", () => {
  it("sends at once when idle, and merges what arrives meanwhile into the next call", async () => {
    const { send, calls } = fakeSend();
    const s = batchingEventSender(send);
    const first = s.send("a", "env", [ev("e1")], "");
    expect(calls.map((c) => c.names)).toEqual([["e1"]]);
    const second = s.send("a", "env", [ev("e2")], "");
    const third = s.send("a", "env", [ev("e3"), ev("e4")], "");
    expect(calls).toHaveLength(1);
    calls[0]?.settle();
    expect(await settled(first)).toBe("ok");
    await tick();
    expect(calls.map((c) => c.names)).toEqual([["e1"], ["e2", "e3", "e4"]]);
    let done = false;
    void second.then(() => {
      done = true;
    });
    await tick();
    expect(done).toBe(false); // not before Kafka has them
    calls[1]?.settle();
    expect([await settled(second), await settled(third)]).toEqual(["ok", "ok"]);
  });

  it("keeps environments and trace parents apart", async () => {
    const { send, calls } = fakeSend();
    const s = batchingEventSender(send);
    void s.send("a", "env1", [ev("x")], "");
    void s.send("a", "env2", [ev("y")], "");
    void s.send("a", "env1", [ev("z")], "00-aaaa-bbbb-01");
    expect(calls.map((c) => [c.env, c.trace, c.names])).toEqual([
      ["env1", "", ["x"]],
      ["env2", "", ["y"]],
      ["env1", "00-aaaa-bbbb-01", ["z"]],
    ]);
  });

  it("splits the waiting sends at the limits, never a send itself", async () => {
    const { send, calls } = fakeSend();
    const s = batchingEventSender(send, { maxEvents: 3, maxBytes: 1 << 20 });
    void s.send("a", "env", [ev("busy")], "");
    void s.send("a", "env", [ev("a1"), ev("a2")], "");
    void s.send("a", "env", [ev("b1"), ev("b2")], "");
    void s.send("a", "env", [ev("c1"), ev("c2"), ev("c3"), ev("c4")], "");
    for (let i = 0; i < 4; i++) {
      calls[i]?.settle();
      await tick();
    }
    expect(calls.map((c) => c.names)).toEqual([
      ["busy"],
      ["a1", "a2"],
      ["b1", "b2"],
      ["c1", "c2", "c3", "c4"],
    ]);
  });

  it("sends each alone when a merged call is refused, so only the refused send fails", async () => {
    const { send, calls } = fakeSend();
    const s = batchingEventSender(send);
    void s.send("a", "env", [ev("busy")], "");
    const good = s.send("a", "env", [ev("good")], "");
    const bad = s.send("a", "env", [ev("bad")], "");
    calls[0]?.settle();
    await tick();
    calls[1]?.settle(new ValidationError("events_json[1] is too large"));
    await tick();
    expect(calls.slice(2).map((c) => c.names)).toEqual([["good"], ["bad"]]);
    calls[2]?.settle();
    calls[3]?.settle(new ValidationError("events_json[0] is too large"));
    expect([await settled(good), await settled(bad)]).toEqual(["ok", "ValidationError"]);
  });

  it("fails every send of a call that could not be made, and goes on with the next", async () => {
    const { send, calls } = fakeSend();
    const s = batchingEventSender(send);
    void s.send("a", "env", [ev("busy")], "");
    const one = s.send("a", "env", [ev("one")], "");
    const two = s.send("a", "env", [ev("two")], "");
    calls[0]?.settle();
    await tick();
    calls[1]?.settle(new UnavailableError("event-api is down"));
    expect([await settled(one), await settled(two)]).toEqual(["UnavailableError", "UnavailableError"]);
    const later = s.send("a", "env", [ev("later")], "");
    expect(calls.at(-1)?.names).toEqual(["later"]);
    calls.at(-1)?.settle();
    expect(await settled(later)).toBe("ok");
  });
});
