// Typed wrappers over the paused-function scripts (pause.lua, resume.lua) and their read: a
// paused function's items stay queued and claim pushes its partitions back (claim.lua).
import type { ShardKeys } from "./keys.js";
import { pausedMember } from "./partitions.js";
import type { Scripts } from "./scripts.js";
import { asInt, asList } from "./scripts.js";

/** Marks a function paused (pause.lua); true when it was not paused before. */
export async function pauseFunction(
  s: Scripts,
  keys: ShardKeys,
  fn: { accountId: string; environmentId: string; functionId: string },
): Promise<boolean> {
  const member = pausedMember(fn.accountId, fn.environmentId, fn.functionId);
  return asInt(await s.run("pause", [keys.paused], [member]), "pause") === 1;
}

/** Unmarks a paused function and wakes its pushed-back partitions (resume.lua); true when it was paused. */
export async function resumeFunction(
  s: Scripts,
  keys: ShardKeys,
  fn: { accountId: string; environmentId: string; functionId: string },
): Promise<{ changed: boolean; nowMs: number }> {
  const member = pausedMember(fn.accountId, fn.environmentId, fn.functionId);
  const k = [
    keys.paused,
    keys.pausedPartitions(fn.accountId, fn.environmentId, fn.functionId),
    keys.forced,
    keys.account(fn.accountId),
    keys.accounts,
  ];
  const list = asList(await s.run("resume", k, [s.now(), member, fn.accountId]), "resume");
  return { nowMs: asInt(list[0], "resume"), changed: asInt(list[1], "resume") === 1 };
}

/** Which of the functions (all of one shard) are paused. */
export async function pausedFunctions(
  s: Scripts,
  keys: ShardKeys,
  fns: Array<{ accountId: string; environmentId: string; functionId: string }>,
): Promise<boolean[]> {
  if (fns.length === 0) return [];
  const members = fns.map((f) => pausedMember(f.accountId, f.environmentId, f.functionId));
  const flags = await s.redis.smismember(keys.paused, ...members);
  return flags.map((f) => f === 1);
}
