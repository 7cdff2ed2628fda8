import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import { describe, expect, it } from "vitest";
import { AnyReplica } from "./any-replica.js";

describe("calls any queue replica can answer", () => {
  it("rotates over the replicas", async () => {
    const any = new AnyReplica(["a", "b", "c"]);
    const used: string[] = [];
    for (let i = 0; i < 4; i++) await any.call(async (c) => used.push(c));
    expect(used).toEqual(["a", "b", "c", "a"]);
  });

  it("moves on to the next replica when one is unavailable, and fails only when all are", async () => {
    const down = new Set(["a"]);
    const any = new AnyReplica(["a", "b"]);
    const call = (c: string) => {
      if (down.has(c)) return Promise.reject(new UnavailableError(`${c} down`));
      return Promise.resolve(c);
    };
    expect(await any.call(call)).toBe("b");
    expect(await any.call(call)).toBe("b");
    down.add("b");
    await expect(any.call(call)).rejects.toBeInstanceOf(UnavailableError);
  });

  it("does not retry an answer every replica would give", async () => {
    const any = new AnyReplica(["a", "b"]);
    const tried: string[] = [];
    await expect(
      any.call((c) => {
        tried.push(c);
        return Promise.reject(new ValidationError("bad item"));
      }),
    ).rejects.toBeInstanceOf(ValidationError);
    expect(tried).toEqual(["a"]);
  });
});
