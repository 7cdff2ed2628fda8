// Input checks of the queue's operations (ValidationError / TooLargeError with a message naming the
// item or lease), kept apart from the operations themselves (queue.ts).
import { TooLargeError, ValidationError } from "@stepline/internal/errors";
import { parsePartition, validateFlow } from "./partitions.js";
import type { FunctionRef, LeaseRef, OpOutcome } from "./queue.js";
import type { ItemInput } from "./store.js";

const MAX_ID = 512;
const MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Latest due time accepted (year 2096): scores (ms × 1024) must stay exact doubles (< 2^53). */
export const MAX_DUE_MS = 4_000_000_000_000;

/** Throws ValidationError for a lease that does not name an item and its account. */
export function validateLease(lease: LeaseRef): void {
  if (!lease.itemId || !lease.accountId) throw new ValidationError("lease needs item_id and account_id");
  if (!Number.isSafeInteger(lease.generation) || lease.generation < 0)
    throw new ValidationError(`lease of ${lease.itemId}: bad generation`);
  if (lease.partitionId && !parsePartition(lease.partitionId))
    throw new ValidationError(`lease of ${lease.itemId}: partition_id is not one the queue handed out`);
}

export function validateFunctionRef(fn: FunctionRef): void {
  for (const [name, v] of [
    ["account_id", fn.accountId],
    ["environment_id", fn.environmentId],
    ["function_id", fn.functionId],
  ] as const) {
    if (!v) throw new ValidationError(`function: ${name} is required`);
    if (v.length > 256) throw new ValidationError(`function: ${name} is longer than 256`);
  }
}

/** Throws ValidationError (or TooLargeError) for an item the queue cannot take. */
export function validateItem(item: ItemInput): void {
  const need = (value: string, name: string, max: number) => {
    if (!value) throw new ValidationError(`item ${item.id || "?"}: ${name} is required`);
    if (value.length > max) throw new ValidationError(`item ${item.id}: ${name} is longer than ${max}`);
  };
  need(item.id, "id", MAX_ID);
  need(item.runId, "run_id", MAX_ID);
  need(item.accountId, "account_id", 256);
  need(item.functionId, "function_id", 256);
  if (item.environmentId.length > 256) throw new ValidationError(`item ${item.id}: environment_id too long`);
  if (!Number.isInteger(item.kind) || item.kind < 1 || item.kind > 5)
    throw new ValidationError(`item ${item.id}: unknown kind ${item.kind}`);
  for (const [name, v] of [
    ["delay_ms", item.delayMs],
    ["run_at_ms", item.runAtMs],
    ["attempt", item.attempt],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new ValidationError(`item ${item.id}: bad ${name}`);
  }
  if (item.runAtMs > MAX_DUE_MS || item.delayMs > MAX_DUE_MS / 2) {
    throw new ValidationError(`item ${item.id}: due time too far ahead`);
  }
  validateFlow(item.id, item.flow);
  if (Buffer.byteLength(item.payload) > MAX_PAYLOAD_BYTES) {
    throw new TooLargeError(`item ${item.id}: payload is larger than ${MAX_PAYLOAD_BYTES} bytes`);
  }
}

/**
 * Sets `out[i]` for each op that fails `check` (as refused and invalid) and returns the others
 * with their indexes, so one bad op never fails the ops batched with it.
 */
export function screen<T>(
  ops: T[],
  out: OpOutcome[],
  check: (op: T) => void,
): Array<{ index: number; op: T }> {
  const valid: Array<{ index: number; op: T }> = [];
  ops.forEach((op, index) => {
    try {
      check(op);
      valid.push({ index, op });
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      out[index] = { ok: false, leaseExpiresAtMs: 0, invalid: err.message };
    }
  });
  return valid;
}
