import { describe, expect, it } from "vitest";
import { derivedId, derivedIds, seededIds, sendTokenOf } from "./send-ids.js";

const header = (token: string) => `stepline=${Buffer.from(token).toString("base64url")}`;

describe("send ids", () => {
  it("reads the token from a tracestate list, among other vendors' members", () => {
    expect(sendTokenOf(header("01RUN:c3"))).toBe("01RUN:c3");
    expect(sendTokenOf(`congo=t61rcWkgMzE, ${header("01RUN:p:abc")}`)).toBe("01RUN:p:abc");
    expect(sendTokenOf("congo=t61rcWkgMzE")).toBeNull();
    expect(sendTokenOf("")).toBeNull();
    expect(sendTokenOf("stepline=not base64!")).toBeNull();
  });

  it("derives the same ids for the same call and position, and different ones otherwise", () => {
    const a = derivedIds("run-1:c2");
    const b = derivedIds("run-1:c2");
    const first = [a(), a()];
    expect([b(), b()]).toEqual(first);
    expect(first[0]).not.toBe(first[1]);
    expect(derivedId("run-1:c3", 0)).not.toBe(first[0]);
    expect(first[0]).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  it("turns the SDK's id seed into ULIDs of its time and entropy, counting up per event", () => {
    const entropy = Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 255]).toString("base64");
    const gen = seededIds(`1700000000000,${entropy}`);
    const again = seededIds(`1700000000000,${entropy}`);
    const ids = [gen?.(), gen?.()];
    expect([again?.(), again?.()]).toEqual(ids);
    expect(ids[0]).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    const time = [...(ids[0] ?? "").slice(0, 10)].reduce(
      (ms, ch) => ms * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".indexOf(ch),
      0,
    );
    expect(time).toBe(1_700_000_000_000);
    expect(ids[0]).not.toBe(ids[1]);
    expect(ids[0]?.slice(0, 10)).toBe(ids[1]?.slice(0, 10));
    for (const bad of ["", "nope", "1700000000000", "1700000000000,short", "x,AAAAAAAAAAAAAA=="]) {
      expect(seededIds(bad)).toBeNull();
    }
  });
});
