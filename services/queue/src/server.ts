// gRPC handlers of QueueService: proto <-> domain translation only. Enqueue is unary and batched,
// and also served on a call stream (EnqueueStream, what executors use); Remove is unary; Work is
// the executor's bidi stream (credits in, leased items out; starts, completions, retries and
// extensions in, one OpResult per op out, tagged with the executor's batch id).
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { serveCallStream } from "@stepline/internal/call-stream";
import { toGrpcError } from "@stepline/internal/errors";
import { unary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import { recordSpan } from "@stepline/internal/telemetry";
import type {
  EnqueueAnswer,
  EnqueueCall,
  EnqueueRequest,
  EnqueueResponse,
  EnqueueResult,
  EnqueueStreamRequest,
  EnqueueStreamResponse,
  GetFunctionPausesRequest,
  GetFunctionPausesResponse,
  Lease,
  ListDeadLettersRequest,
  ListDeadLettersResponse,
  NewItem,
  PauseFunctionRequest,
  PauseFunctionResponse,
  FunctionRef as ProtoFunctionRef,
  LeasedItem as ProtoLeasedItem,
  QueueServiceServer,
  RedriveDeadLettersRequest,
  RedriveDeadLettersResponse,
  RemoveRequest,
  RemoveResponse,
  ResumeFunctionRequest,
  ResumeFunctionResponse,
  WorkRequest,
  WorkResponse,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import {
  EnqueueStatus,
  OpStatus,
  RedriveStatus,
  RemoveStatus,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Dispatcher } from "./lease-stream.js";
import { enqueuedTotal, handOffsTotal, leasedTotal, opsTotal, redrivenTotal } from "./metrics.js";
import type { FunctionRef, LeaseRef, OpOutcome, Queue, RemoveOutcome } from "./queue.js";
import type { LeasedItem } from "./store.js";

const REMOVE_STATUS: Record<RemoveOutcome, RemoveStatus> = {
  removed: RemoveStatus.REMOVE_STATUS_REMOVED,
  absent: RemoveStatus.REMOVE_STATUS_ABSENT,
  leased: RemoveStatus.REMOVE_STATUS_LEASED,
};

/** The QueueService implementation over a queue and the executors' dispatcher. */
export function queueService(queue: Queue, dispatcher: Dispatcher, log: Logger): QueueServiceServer {
  const enqueue = async (items: NewItem[]): Promise<EnqueueResult[]> => {
    const statuses = await queue.enqueue(items);
    enqueuedTotal.inc(statuses.filter((s) => s === "enqueued").length);
    return items.map((item, i) => ({
      itemId: item.id,
      status:
        statuses[i] === "enqueued"
          ? EnqueueStatus.ENQUEUE_STATUS_ENQUEUED
          : EnqueueStatus.ENQUEUE_STATUS_EXISTS,
    }));
  };
  return {
    enqueue: unary(
      log,
      async (req: EnqueueRequest): Promise<EnqueueResponse> => ({
        results: await enqueue(req.items),
      }),
    ),
    enqueueStream: (call) =>
      serveCallStream<EnqueueCall, EnqueueAnswer, EnqueueStreamRequest, EnqueueStreamResponse>(call, {
        calls: (req) => req.calls,
        pack: (answers) => ({ answers }),
        handle: async (c) => ({ results: await enqueue(c.items) }),
        empty: { results: [] },
        log,
      }),
    remove: unary(log, async (req: RemoveRequest): Promise<RemoveResponse> => {
      const outcomes = await queue.remove(req.items);
      return {
        results: req.items.map((item, i) => ({
          itemId: item.itemId,
          status: REMOVE_STATUS[outcomes[i] ?? "absent"],
        })),
      };
    }),
    pauseFunction: unary(log, async (req: PauseFunctionRequest): Promise<PauseFunctionResponse> => {
      return { changed: await queue.pause(functionRef(req.function)) };
    }),
    resumeFunction: unary(log, async (req: ResumeFunctionRequest): Promise<ResumeFunctionResponse> => {
      return { changed: await queue.resume(functionRef(req.function)) };
    }),
    getFunctionPauses: unary(
      log,
      async (req: GetFunctionPausesRequest): Promise<GetFunctionPausesResponse> => {
        const flags = await queue.paused(req.functions.map(functionRef));
        return { functions: req.functions.map((f, i) => ({ function: f, paused: flags[i] ?? false })) };
      },
    ),
    listDeadLetters: unary(log, async (req: ListDeadLettersRequest): Promise<ListDeadLettersResponse> => {
      const { items, more } = await queue.deadLetters(req.accountId, req.limit === 0 ? 100 : req.limit);
      return { items, more };
    }),
    redriveDeadLetters: unary(
      log,
      async (req: RedriveDeadLettersRequest): Promise<RedriveDeadLettersResponse> => {
        const done = await queue.redrive(req.items);
        redrivenTotal.inc(done.filter(Boolean).length);
        return {
          results: req.items.map((item, i) => ({
            itemId: item.itemId,
            status: done[i] ? RedriveStatus.REDRIVE_STATUS_REDRIVEN : RedriveStatus.REDRIVE_STATUS_NOT_DEAD,
          })),
        };
      },
    ),
    work: (call) => workStream(call, queue, dispatcher, log),
  };
}

/** A missing function becomes an empty one, which the queue refuses as invalid. */
function functionRef(f: ProtoFunctionRef | undefined): FunctionRef {
  return {
    accountId: f?.accountId ?? "",
    environmentId: f?.environmentId ?? "",
    functionId: f?.functionId ?? "",
  };
}

function workStream(
  call: ServerDuplexStream<WorkRequest, WorkResponse>,
  queue: Queue,
  dispatcher: Dispatcher,
  log: Logger,
): void {
  let pending = 0;
  let clientDone = false;
  let finished = false;
  const write = (res: WorkResponse) => {
    if (!finished) call.write(res);
  };
  const finish = (err?: unknown) => {
    if (finished) return;
    dispatcher.close(handle);
    finished = true;
    if (err === undefined) call.end();
    else call.emit("error", toGrpcError(err));
  };
  const handle = dispatcher.open(
    (items) => write({ response: { $case: "items", value: { items: items.map(toProtoLeased) } } }),
    () => finish(),
  );

  // Runs one batch of ops and answers it. An invalid op is answered STALE on its own (the holder
  // drops its result; the lease is untouched). Any other failure (Redis down) ends the stream: the
  // executor reconnects and sends the batch again (every op is idempotent per generation).
  const answer = (batchId: number, op: string, ids: string[], run: () => Promise<OpOutcome[]>) => {
    pending++;
    run().then(
      (outcomes) => {
        pending--;
        let stale = 0;
        const results = outcomes.map((o, i) => {
          if (o.invalid !== undefined) {
            opsTotal.inc({ op, result: "invalid" });
            log.warn({ op, itemId: ids[i], reason: o.invalid }, "refused an invalid op");
          } else if (!o.ok) stale++;
          return {
            itemId: ids[i] ?? "",
            status: o.ok ? OpStatus.OP_STATUS_OK : OpStatus.OP_STATUS_STALE,
            leaseExpiresAtMs: o.leaseExpiresAtMs,
            handedOff: o.handedOff !== undefined,
          };
        });
        opsTotal.inc({ op, result: "ok" }, outcomes.filter((o) => o.ok).length);
        if (stale > 0) opsTotal.inc({ op, result: "stale" }, stale);
        write({ response: { $case: "results", value: { batchId, results } } });
        if (clientDone && pending === 0) finish();
      },
      (err: unknown) => {
        pending--;
        log.error({ err, op }, "work stream op failed");
        finish(err);
      },
    );
  };

  // Handed-off items go out on this stream before the ops' results (which say handed_off), so the
  // executor never sees the result first. On a stream that closed meanwhile they are released at
  // once rather than left leased to nobody until the lease expires.
  const settleHandOffs = async (op: "complete" | "start", asked: boolean[], outcomes: OpOutcome[]) => {
    const items: LeasedItem[] = [];
    asked.forEach((a, i) => {
      const handed = outcomes[i]?.handedOff;
      if (handed) items.push({ ...handed, handedOff: true });
      else if (a) handOffsTotal.inc({ op, outcome: "enqueued" });
    });
    if (items.length === 0) return;
    if (handle.open) {
      handOffsTotal.inc({ op, outcome: "handed" }, items.length);
      leasedTotal.inc(items.length);
      handle.send(items);
      return;
    }
    handOffsTotal.inc({ op, outcome: "released" }, items.length);
    await queue.release(items);
    for (const o of outcomes) delete o.handedOff;
  };

  const onRequest = (r: NonNullable<WorkRequest["request"]>) => {
    switch (r.$case) {
      case "credits":
        dispatcher.grant(handle, r.value.count);
        break;
      case "complete": {
        const ops = r.value.items.map((c) => ({
          lease: leaseRef(c.lease),
          next: c.next,
          handOff: c.handOff,
        }));
        answer(
          r.value.batchId,
          "complete",
          ops.map((o) => o.lease.itemId),
          async () => {
            const outcomes = await queue.complete(ops);
            await settleHandOffs(
              "complete",
              ops.map((o) => o.handOff),
              outcomes,
            );
            return outcomes;
          },
        );
        break;
      }
      case "start": {
        // Each hand-off spends one of the stream's credits: take as many as there are items up
        // front (so a round cannot spend them meanwhile) and give back what was not handed off.
        const items = r.value.items;
        const taken = dispatcher.take(handle, items.length);
        answer(
          r.value.batchId,
          "start",
          items.map((i) => i.id),
          async () => {
            let started: Awaited<ReturnType<Queue["start"]>>;
            try {
              started = await queue.start(items, taken);
            } catch (err) {
              dispatcher.giveBack(handle, taken);
              throw err;
            }
            const { outcomes } = started;
            dispatcher.giveBack(handle, taken - outcomes.filter((o) => o.handedOff).length);
            enqueuedTotal.inc(started.enqueued);
            await settleHandOffs(
              "start",
              items.map(() => true),
              outcomes,
            );
            return outcomes;
          },
        );
        break;
      }
      case "retry": {
        // Negative run_at_ms is not part of the contract (0 = now); -1 means "keep place" inside.
        const ops = r.value.items.map((x) => ({
          lease: leaseRef(x.lease),
          runAtMs: Math.max(0, x.runAtMs),
          attempt: x.attempt,
        }));
        answer(
          r.value.batchId,
          "retry",
          ops.map((o) => o.lease.itemId),
          () => queue.retry(ops),
        );
        break;
      }
      case "extend": {
        const leases = r.value.leases.map(leaseRef);
        answer(
          r.value.batchId,
          "extend",
          leases.map((l) => l.itemId),
          () => queue.extend(leases),
        );
        break;
      }
    }
  };
  call.on("data", (req: WorkRequest) => {
    if (!req.request || finished) return;
    try {
      onRequest(req.request);
    } catch (err) {
      finish(err);
    }
  });
  // Half-close: no more credits or ops; answer what is in flight, then end.
  call.on("end", () => {
    clientDone = true;
    dispatcher.close(handle);
    if (pending === 0) finish();
  });
  // Gone: leased items stay leased until their leases expire.
  call.on("cancelled", () => {
    dispatcher.close(handle);
    finished = true;
  });
  call.on("error", () => {
    dispatcher.close(handle);
    finished = true;
  });
}

/** A missing lease becomes an empty one, which the queue refuses as invalid (for that op only). */
function leaseRef(lease: Lease | undefined): LeaseRef {
  return {
    itemId: lease?.itemId ?? "",
    accountId: lease?.accountId ?? "",
    generation: lease?.generation ?? 0,
    partitionId: lease?.partitionId ?? "",
  };
}

/** Converts a leased item for the stream; a traced run's item records its wait in the queue. */
function toProtoLeased(i: LeasedItem): ProtoLeasedItem {
  if (i.traceParent) {
    recordSpan("queue.wait", {
      parent: i.traceParent,
      startMs: Math.min(i.dueMs, Date.now()),
      endMs: Date.now(),
      attributes: { "stepline.item_id": i.id, "stepline.item_kind": i.kind, "stepline.attempt": i.attempt },
    });
  }
  return {
    item: {
      id: i.id,
      runId: i.runId,
      accountId: i.accountId,
      environmentId: i.environmentId,
      functionId: i.functionId,
      kind: i.kind,
      delayMs: 0,
      runAtMs: i.dueMs,
      attempt: i.attempt,
      payload: i.payload,
      flow: undefined,
      runStartedAtMs: 0,
      traceParent: i.traceParent,
    },
    generation: i.generation,
    leaseExpiresAtMs: i.leaseExpiresAtMs,
    partitionId: i.partitionId,
    handedOff: i.handedOff === true,
    releases: i.releases,
  };
}
