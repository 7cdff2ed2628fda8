// The queue's public shapes, as its callers (server, scheduler, tests) name them.
import type { LeasedItem } from "./store.js";

export interface QueueOptions {
  /** Key namespace inside the hash tag ("" in production). */
  namespace: string;
  leaseMs: number;
  maxDeliveries: number;
  seenTtlMs: number;
  /** Number of virtual shards (tests may use fewer). */
  shards?: number;
}

/** A lease as an executor names it. */
export interface LeaseRef {
  itemId: string;
  accountId: string;
  generation: number;
  /** The partition id the lease was handed out with; absent = read it from the item. */
  partitionId?: string | undefined;
}

/** A function of an account's environment (pause, resume). */
export interface FunctionRef {
  accountId: string;
  environmentId: string;
  functionId: string;
}

/** The result of one completion, retry or extension (`leaseExpiresAtMs` for extensions). */
export interface OpOutcome {
  ok: boolean;
  leaseExpiresAtMs: number;
  /** Set when the op was refused as invalid without being tried (its lease is untouched). */
  invalid?: string;
  /** A completion's next item, leased to the completing holder at once (hand-off). */
  handedOff?: LeasedItem;
}

/** What became of an item Remove named. */
export type RemoveOutcome = "removed" | "absent" | "leased";
