// Partition ids and what they imply. Items of one function that share flow control share a
// partition (a sorted set); the id spells out the concurrency sets the items count against and,
// for throttled start items, the throttle key, so every script can name those keys from the id
// alone (a lease carries it back). Limits are not in the id: claim gets them from the function's
// synced config (limits.ts).
//
//   fn:<env>:<fn>                 items without flow control (the same id as before flow control)
//   fn:<env>:<fn>:c<s><hash>...   items counting against up to two concurrency limits
//   th:<env>:<fn>[:c..]:t<hash>   start items of a throttled function (steps are never throttled)
//
// <s> is the limit's scope (f function, e environment, a account); <hash> the hex hash of the
// limit's key as evaluated for the run (empty for a limit without a key). env and fn are
// URI-encoded, so ':' only ever separates.
import { ValidationError } from "@stepline/internal/errors";
import { enc } from "./keys.js";

export type Scope = "f" | "e" | "a";

/** The flow control of an item as the producer sent it (proto FlowControl). */
export interface FlowInput {
  concurrency: Array<{ scope: number; keyHash: string }>;
  throttled: boolean;
  throttleKeyHash: string;
  priorityS: number;
}

export interface PartitionSpec {
  environmentId: string;
  functionId: string;
  /** The concurrency limits the partition's items count against, in the function's config order. */
  groups: Array<{ scope: Scope; keyHash: string }>;
  /** Set for start items of a throttled function. */
  throttle: { keyHash: string } | null;
}

const SCOPES: Record<number, Scope> = { 1: "f", 2: "e", 3: "a" };
const HASH = /^[0-9a-f]{0,64}$/;
export const MAX_GROUPS = 2;
export const MAX_PRIORITY_S = 600;

/** Throws ValidationError for flow control the queue cannot take. */
export function validateFlow(itemId: string, flow: FlowInput | undefined): void {
  if (!flow) return;
  if (flow.concurrency.length > MAX_GROUPS) {
    throw new ValidationError(`item ${itemId}: at most ${MAX_GROUPS} concurrency groups`);
  }
  for (const g of flow.concurrency) {
    if (!SCOPES[g.scope]) throw new ValidationError(`item ${itemId}: unknown concurrency scope ${g.scope}`);
    if (!HASH.test(g.keyHash)) throw new ValidationError(`item ${itemId}: key_hash must be hex`);
  }
  if (!HASH.test(flow.throttleKeyHash))
    throw new ValidationError(`item ${itemId}: throttle_key_hash must be hex`);
  if (!Number.isInteger(flow.priorityS) || Math.abs(flow.priorityS) > MAX_PRIORITY_S) {
    throw new ValidationError(`item ${itemId}: priority_s must be an integer from -600 to 600`);
  }
}

/** The partition an item goes to. `isStart` items of a throttled run go to its throttle partition. */
export function partitionOf(
  environmentId: string,
  functionId: string,
  flow: FlowInput | undefined,
  isStart: boolean,
): string {
  const throttled = isStart && flow?.throttled === true;
  let pid = `${throttled ? "th" : "fn"}:${enc(environmentId)}:${enc(functionId)}`;
  for (const g of flow?.concurrency ?? []) pid += `:c${SCOPES[g.scope] ?? "f"}${g.keyHash}`;
  if (throttled) pid += `:t${flow?.throttleKeyHash ?? ""}`;
  return pid;
}

/** Reads a partition id back; null for one this module did not write. */
export function parsePartition(pid: string): PartitionSpec | null {
  const parts = pid.split(":");
  const [kind, env, fn, ...rest] = parts;
  if ((kind !== "fn" && kind !== "th") || env === undefined || fn === undefined) return null;
  let environmentId: string;
  let functionId: string;
  try {
    environmentId = decodeURIComponent(env);
    functionId = decodeURIComponent(fn);
  } catch {
    return null;
  }
  const groups: PartitionSpec["groups"] = [];
  let throttle: PartitionSpec["throttle"] = null;
  for (const r of rest) {
    const scope = r[1];
    if (r[0] === "c" && (scope === "f" || scope === "e" || scope === "a") && HASH.test(r.slice(2))) {
      if (throttle || groups.length >= MAX_GROUPS) return null;
      groups.push({ scope, keyHash: r.slice(2) });
    } else if (r[0] === "t" && kind === "th" && !throttle && HASH.test(r.slice(1))) {
      throttle = { keyHash: r.slice(1) };
    } else {
      return null;
    }
  }
  if ((kind === "th") !== (throttle !== null)) return null;
  return { environmentId, functionId, groups, throttle };
}

/** The id of a concurrency set, unique within the account (keys.concurrency/blocked take it). */
export function concurrencySetId(spec: PartitionSpec, group: PartitionSpec["groups"][number]): string {
  switch (group.scope) {
    case "f":
      return `f:${enc(spec.environmentId)}:${enc(spec.functionId)}:${group.keyHash}`;
    case "e":
      return `e:${enc(spec.environmentId)}:${group.keyHash}`;
    case "a":
      return `a:${group.keyHash}`;
  }
}

/** The member of the shard's paused set that names a function. */
export function pausedMember(accountId: string, environmentId: string, functionId: string): string {
  return `${accountId}\n${environmentId}\n${functionId}`;
}
