// Trigger matching (pure): which of an environment's functions an event starts. An event name
// matches a trigger exactly, or a wildcard trigger `prefix/*` / `prefix.*` by prefix (as the SDK
// matches them); a trigger's CEL `if` must then evaluate to true. Internal `inngest/` events need
// no special case: validation only admits wildcards with a non-empty prefix, so they reach only
// functions that name the `inngest/` namespace themselves.

import { celMatches } from "./expr.js";
import type { StoredFunction } from "./model.js";

interface Entry {
  fn: StoredFunction;
  expression: string;
}

/** The event step.invoke sends to start its function (data._inngest.fn_id names it). */
export const INVOKED = "inngest/function.invoked";

/** The id of the function an `inngest/function.invoked` event starts, or null. */
export function invokeTarget(event: unknown): string | null {
  const id = (event as { data?: { _inngest?: { fn_id?: unknown } } } | null)?.data?._inngest?.fn_id;
  return typeof id === "string" && id ? id : null;
}

/** The function an `inngest/function.invoked` event starts, when the environment has it. */
export function invokedFunction(index: FunctionIndex, ev: MatchableEvent): StoredFunction | undefined {
  const target = invokeTarget(ev.event);
  const fn = target === null ? undefined : index.byId.get(target);
  return fn && fn.accountId === ev.accountId ? fn : undefined;
}

/** An environment's event triggers, indexed for matching many events against them. */
export interface FunctionIndex {
  /** Every function by id: `inngest/function.invoked` starts its target by id, not by trigger. */
  byId: Map<string, StoredFunction>;
  exact: Map<string, Entry[]>;
  /** Wildcard triggers with the `*` removed (`app/`), in registry order. */
  wildcards: Array<Entry & { prefix: string }>;
}

/** The event fields matching needs. */
export interface MatchableEvent {
  accountId: string;
  environmentId: string;
  name: string;
  /** The parsed event object, the `event` of CEL expressions. */
  event: unknown;
}

/** Indexes the event triggers of one environment's functions (cron triggers are not indexed). */
export function buildIndex(functions: StoredFunction[]): FunctionIndex {
  const index: FunctionIndex = { byId: new Map(), exact: new Map(), wildcards: [] };
  for (const fn of functions) {
    index.byId.set(fn.fn.id, fn);
    for (const t of fn.fn.triggers) {
      if (t.kind !== "event") continue;
      const entry = { fn, expression: t.expression };
      if (t.event.endsWith("*")) {
        index.wildcards.push({ ...entry, prefix: t.event.slice(0, -1) });
      } else {
        const list = index.exact.get(t.event);
        if (list) list.push(entry);
        else index.exact.set(t.event, [entry]);
      }
    }
  }
  return index;
}

/**
 * The functions an event starts, each once (a function with two matching triggers runs once).
 * Only the event's own environment is consulted, and a function synced under another account
 * never matches, so an event cannot reach another tenant's functions.
 */
export function matchEvent(
  indexes: ReadonlyMap<string, FunctionIndex>,
  ev: MatchableEvent,
): StoredFunction[] {
  const index = indexes.get(ev.environmentId);
  if (!index) return [];
  const out: StoredFunction[] = [];
  const taken = new Set<string>();
  if (ev.name === INVOKED) {
    // The invoke's target starts whatever its triggers; functions that trigger on the event too.
    const target = invokedFunction(index, ev);
    if (target) {
      taken.add(target.fn.id);
      out.push(target);
    }
  }
  const consider = (entry: Entry) => {
    if (taken.has(entry.fn.fn.id) || entry.fn.accountId !== ev.accountId) return;
    if (entry.expression && !celMatches(entry.expression, { event: ev.event })) return;
    taken.add(entry.fn.fn.id);
    out.push(entry.fn);
  };
  for (const entry of index.exact.get(ev.name) ?? []) consider(entry);
  for (const entry of index.wildcards) {
    if (ev.name.startsWith(entry.prefix)) consider(entry);
  }
  return out;
}
