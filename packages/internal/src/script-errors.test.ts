import { describe, expect, it } from "vitest";
import { scriptErrorOf } from "./script-errors.js";

describe("scriptErrorOf", () => {
  it("reads a script's refusal, with or without Redis's ERR prefix, and nothing else", () => {
    expect(scriptErrorOf(new Error("NORUN"))).toEqual({ code: "NORUN", detail: "" });
    expect(scriptErrorOf(new Error("ERR LIMIT steps 1000"))).toEqual({ code: "LIMIT", detail: "steps 1000" });
    expect(scriptErrorOf(new Error("CONFLICT fn-a shop"))).toEqual({ code: "CONFLICT", detail: "fn-a shop" });
    expect(scriptErrorOf(new Error("connect ECONNREFUSED 127.0.0.1:6379"))).toBeNull();
    expect(scriptErrorOf(new Error("NOSCRIPT No matching script"))).toBeNull();
    expect(scriptErrorOf("WRONGTYPE Operation against a key")).toBeNull();
  });
});
