// The ops an executor sends on a QueueService.Work stream (work-loop.ts) and how a flush turns
// them into request messages: one kind per message, at most OPS_PER_MESSAGE ops each.

import type { Lease, NewItem, OpResult, WorkRequest } from "@stepline/proto/stepline/queue/v1/queue_service";

/**
 * Most ops of one kind in one message. The queue refuses a call of more than 10,000 items (and
 * ends the stream for it), and one message must stay under gRPC's 16 MiB; a busier flush sends
 * several messages.
 */
export const OPS_PER_MESSAGE = 1_000;

export type Op =
  | { kind: "start"; item: NewItem }
  | { kind: "complete"; lease: Lease; next: NewItem[] }
  | { kind: "retry"; lease: Lease; runAtMs: number; attempt: number }
  | { kind: "extend"; lease: Lease };

export interface PendingOp {
  op: Op;
  deadlineMs: number;
  resolve(result: OpResult | null): void;
  /** A completion sent asking for a hand-off on the current stream: one credit counted for it. */
  handOffCounted?: boolean;
}

/** The item an op is about (its results are matched by it). */
export function opItemId(op: Op): string {
  return op.kind === "start" ? op.item.id : op.lease.itemId;
}

/** A completion whose next items include one due now (run_at and delay 0): the run goes on at once. */
export function wantsHandOff(op: Op): boolean {
  return op.kind === "complete" && op.next.some((n) => n.runAtMs <= 0 && n.delayMs <= 0);
}

export function toRequest(
  kind: Op["kind"],
  batchId: number,
  list: PendingOp[],
  handOffs: Set<PendingOp>,
): WorkRequest {
  if (kind === "start") {
    const items = list.map((p) => (p.op as Extract<Op, { kind: "start" }>).item);
    return { request: { $case: "start", value: { batchId, items } } };
  }
  if (kind === "complete") {
    const items = list.map((p) => {
      const op = p.op as Extract<Op, { kind: "complete" }>;
      return { lease: op.lease, next: op.next, handOff: handOffs.has(p) };
    });
    return { request: { $case: "complete", value: { batchId, items } } };
  }
  if (kind === "retry") {
    const items = list.map((p) => {
      const op = p.op as Extract<Op, { kind: "retry" }>;
      return { lease: op.lease, runAtMs: op.runAtMs, attempt: op.attempt };
    });
    return { request: { $case: "retry", value: { batchId, items } } };
  }
  const leases = list.map((p) => (p.op as Extract<Op, { kind: "extend" }>).lease);
  return { request: { $case: "extend", value: { batchId, leases } } };
}
