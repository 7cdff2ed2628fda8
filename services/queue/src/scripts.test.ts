// Scripts' own behaviour against a real Redis (each script's codes are in store.test.ts).
import { expect, it } from "vitest";
import { NotOwnerError } from "./scripts.js";
import { RENEWED } from "./store.js";
import { T0, TOKEN, useScriptShard } from "./testing/script-fixture.js";

const shard = useScriptShard(19, { ownerLeaseMs: 60_000 });

it("runMany answers each call in order and throws the typed refusal of one refused", async () => {
  const { keys, s } = shard;
  const fenced = {
    name: "reclaim" as const,
    keys: [keys.items, keys.leased, keys.owner, keys.accounts, keys.forced],
  };
  const ok = await s.runMany([
    { name: "owner-acquire", keys: [keys.owner], args: [TOKEN, 60_000] },
    { ...fenced, args: [T0, TOKEN, 0] },
  ]);
  expect(ok).toEqual([RENEWED, [T0, expect.any(Number), expect.any(Number), []]]);
  await expect(
    s.runMany([
      { name: "owner-acquire", keys: [keys.owner], args: [TOKEN, 60_000] },
      { ...fenced, args: [T0, "not-the-owner", 0] },
    ]),
  ).rejects.toBeInstanceOf(NotOwnerError);
});
