import type { ClientDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { ValidationError } from "@stepline/internal/errors";
import { callUnary, createClient } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import { waitFor } from "@stepline/internal/testing";
import type {
  EnqueueAnswer,
  EnqueueStreamResponse,
  LeasedItem,
  NewItem,
  OpResults,
  WorkRequest,
  WorkResponse,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import {
  EnqueueStatus,
  ItemKind,
  OpStatus,
  QueueServiceClient,
  RedriveStatus,
  RemoveStatus,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { staticLimitsSource } from "./limits.js";
import type { RunningQueueService } from "./service.js";
import { startQueueService } from "./service.js";
import { dropNamespace, testNamespace, testRedis } from "./testing/redis.js";

const log = createLogger("queue-test", "silent");
let redis: Redis;
let ns: string;
let service: RunningQueueService;
let client: InstanceType<typeof QueueServiceClient>;

function newItem(id: string, over: Partial<NewItem> = {}): NewItem {
  return {
    id,
    runId: "run-1",
    accountId: "acct-grpc",
    environmentId: "env",
    functionId: "fn",
    kind: ItemKind.ITEM_KIND_STEP,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: JSON.stringify({ stepId: id }),
    flow: undefined,
    runStartedAtMs: 0,
    traceParent: "",
    ...over,
  };
}

/** A Work stream that records what the queue sends. */
class Executor {
  readonly items: LeasedItem[] = [];
  readonly results = new Map<number, OpResults>();
  readonly stream: ClientDuplexStream<WorkRequest, WorkResponse>;
  private batch = 0;

  constructor() {
    this.stream = client.work();
    this.stream.on("data", (res: WorkResponse) => {
      if (res.response?.$case === "items") this.items.push(...res.response.value.items);
      if (res.response?.$case === "results") this.results.set(res.response.value.batchId, res.response.value);
    });
    this.stream.on("error", () => undefined);
  }

  credits(count: number) {
    this.stream.write({ request: { $case: "credits", value: { count } } });
  }

  waitItems(n: number) {
    return waitFor(`${n} leased items`, () => (this.items.length >= n ? this.items.slice(0, n) : undefined));
  }

  /** Sends one batch and waits for its results. */
  async op(request: WorkRequest["request"]): Promise<OpResults> {
    if (!request || request.$case === "credits") throw new Error("not an op");
    const batchId = ++this.batch;
    request.value.batchId = batchId;
    this.stream.write({ request });
    return waitFor(`results of batch ${batchId}`, () => this.results.get(batchId));
  }

  lease(i: LeasedItem, generation = i.generation) {
    return {
      itemId: i.item?.id ?? "",
      accountId: i.item?.accountId ?? "",
      generation,
      partitionId: i.partitionId,
    };
  }
}

beforeAll(async () => {
  redis = testRedis();
  ns = testNamespace();
  service = await startQueueService(
    redis,
    {
      grpcAddr: "127.0.0.1:0",
      namespace: ns,
      leaseMs: 30_000,
      maxDeliveries: 20,
      seenTtlMs: 60_000,
      claimBatch: 16,
      ownerLeaseMs: 10_000,
      sweepMs: 5_000,
      limits: staticLimitsSource(),
      limitsTtlMs: 0,
      shards: 8,
      scriptOptions: { assertSlots: true },
    },
    log,
  );
  client = createClient(QueueServiceClient, `127.0.0.1:${service.port}`);
});

afterAll(async () => {
  client?.close();
  await service?.stop();
  await dropNamespace(redis, ns);
  await redis.quit();
});

describe("QueueService over gRPC", () => {
  it("enqueues idempotently and refuses an item without an id", async () => {
    const first = await callUnary(client.enqueue.bind(client), {
      items: [newItem("e1", { delayMs: 3_600_000 })],
    });
    expect(first.results).toEqual([{ itemId: "e1", status: EnqueueStatus.ENQUEUE_STATUS_ENQUEUED }]);
    const again = await callUnary(client.enqueue.bind(client), { items: [newItem("e1")] });
    expect(again.results[0]?.status).toBe(EnqueueStatus.ENQUEUE_STATUS_EXISTS);
    await expect(callUnary(client.enqueue.bind(client), { items: [newItem("")] })).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  it("answers each call on an EnqueueStream as Enqueue would, a refused one alone", async () => {
    const stream = client.enqueueStream();
    const answers: EnqueueAnswer[] = [];
    stream.on("data", (res: EnqueueStreamResponse) => answers.push(...res.answers));
    stream.write({
      calls: [
        { id: 1, items: [newItem("s1", { delayMs: 3_600_000 })] },
        { id: 2, items: [newItem("")] },
      ],
    });
    const first = await waitFor("two answers", () => (answers.length >= 2 ? answers.slice() : undefined));
    expect(first.find((a) => a.id === 1)).toEqual({
      id: 1,
      code: 0,
      message: "",
      results: [{ itemId: "s1", status: EnqueueStatus.ENQUEUE_STATUS_ENQUEUED }],
    });
    const refused = first.find((a) => a.id === 2);
    expect(refused?.code).toBe(status.INVALID_ARGUMENT);
    expect(refused?.message).toMatch(/id/);
    // The stream goes on: a repeat of the first item is reported as already there.
    stream.write({ calls: [{ id: 3, items: [newItem("s1")] }] });
    const again = await waitFor("the third answer", () => answers.find((a) => a.id === 3));
    expect(again.results).toEqual([{ itemId: "s1", status: EnqueueStatus.ENQUEUE_STATUS_EXISTS }]);
    stream.end();
  });

  it("removes a queued item by id, only for its own account, and refuses an item without ids", async () => {
    await callUnary(client.enqueue.bind(client), { items: [newItem("rm-1", { delayMs: 3_600_000 })] });
    const account = newItem("rm-1").accountId;
    const foreign = await callUnary(client.remove.bind(client), {
      items: [{ itemId: "rm-1", accountId: "someone-else" }],
    });
    expect(foreign.results).toEqual([{ itemId: "rm-1", status: RemoveStatus.REMOVE_STATUS_ABSENT }]);
    const removed = await callUnary(client.remove.bind(client), {
      items: [{ itemId: "rm-1", accountId: account }],
    });
    expect(removed.results).toEqual([{ itemId: "rm-1", status: RemoveStatus.REMOVE_STATUS_REMOVED }]);
    // Gone for good: a late enqueue of the same id is refused.
    const late = await callUnary(client.enqueue.bind(client), { items: [newItem("rm-1")] });
    expect(late.results[0]?.status).toBe(EnqueueStatus.ENQUEUE_STATUS_EXISTS);
    await expect(
      callUnary(client.remove.bind(client), { items: [{ itemId: "", accountId: account }] }),
    ).rejects.toBeInstanceOf(ValidationError);
  });

  it("lists and redrives dead letters over gRPC, and refuses a bad limit or an item without ids", async () => {
    const listed = await callUnary(client.listDeadLetters.bind(client), { accountId: "acct-none", limit: 0 });
    expect(listed).toEqual({ items: [], more: false });
    for (const limit of [-1, 1_001]) {
      const err = await callUnary(client.listDeadLetters.bind(client), { accountId: "", limit }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toBe("limit must be 1..1000");
    }
    const redriven = await callUnary(client.redriveDeadLetters.bind(client), {
      items: [{ itemId: "never-dead", accountId: "acct-none" }],
    });
    expect(redriven.results).toEqual([
      { itemId: "never-dead", status: RedriveStatus.REDRIVE_STATUS_NOT_DEAD },
    ]);
    await expect(
      callUnary(client.redriveDeadLetters.bind(client), { items: [{ itemId: "x", accountId: "" }] }),
    ).rejects.toBeInstanceOf(ValidationError);
  });

  it("pauses and resumes a function over gRPC, and refuses a function without its ids", async () => {
    const fn = { accountId: "acct-grpc", environmentId: "env", functionId: "paused-fn" };
    expect(await callUnary(client.pauseFunction.bind(client), { function: fn })).toEqual({ changed: true });
    const state = await callUnary(client.getFunctionPauses.bind(client), { functions: [fn] });
    expect(state.functions).toEqual([{ function: fn, paused: true }]);
    expect(await callUnary(client.resumeFunction.bind(client), { function: fn })).toEqual({ changed: true });
    for (const bad of [undefined, { ...fn, functionId: "" }, { ...fn, accountId: "" }]) {
      const err = await callUnary(client.pauseFunction.bind(client), { function: bad }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(/^function: (account_id|function_id) is required$/);
    }
  });

  it("runs enqueue -> lease -> complete with next -> next leased -> complete over one Work stream", async () => {
    const run = { runId: "run-chain", accountId: "acct-chain" };
    const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await callUnary(client.enqueue.bind(client), { items: [newItem("run-chain:start", run)] });
    const ex = new Executor();
    ex.credits(1);
    const [start] = await ex.waitItems(1);
    expect(start?.item).toMatchObject({ id: "run-chain:start", accountId: "acct-chain", attempt: 0 });
    expect(start?.generation).toBe(1);
    expect(start?.leaseExpiresAtMs).toBeGreaterThan(Date.now());
    expect(start?.item?.traceParent).toBe("");

    // No credits left: the next item is enqueued by the completion but not handed out.
    const done = await ex.op({
      $case: "complete",
      value: {
        batchId: 0,
        items: [
          {
            lease: ex.lease(start as LeasedItem),
            next: [newItem("run-chain:c1", { ...run, traceParent })],
            handOff: false,
          },
        ],
      },
    });
    expect(done.results).toEqual([
      { itemId: "run-chain:start", status: OpStatus.OP_STATUS_OK, leaseExpiresAtMs: 0, handedOff: false },
    ]);
    expect(ex.items).toHaveLength(1);

    ex.credits(1);
    const [, next] = await ex.waitItems(2);
    expect(next?.item?.id).toBe("run-chain:c1");
    // A traced run's item keeps its trace through the queue.
    expect(next?.item?.traceParent).toBe(traceParent);
    // The same completion again (a network retry) is answered OK without doing anything twice.
    const repeat = await ex.op({
      $case: "complete",
      value: { batchId: 0, items: [{ lease: ex.lease(start as LeasedItem), next: [], handOff: false }] },
    });
    expect(repeat.results[0]?.status).toBe(OpStatus.OP_STATUS_OK);
    const finish = await ex.op({
      $case: "complete",
      value: { batchId: 0, items: [{ lease: ex.lease(next as LeasedItem), next: [], handOff: false }] },
    });
    expect(finish.results[0]?.status).toBe(OpStatus.OP_STATUS_OK);
    ex.stream.end();
  });

  it("never hands out more items than the credits granted, and extends, retries and refuses stale leases", async () => {
    const acct = { accountId: "acct-credits" };
    await callUnary(client.enqueue.bind(client), {
      items: Array.from({ length: 6 }, (_, i) => newItem(`cr-${i}`, acct)),
    });
    const ex = new Executor();
    ex.credits(3);
    const got = await ex.waitItems(3);
    const ext = await ex.op({
      $case: "extend",
      value: { batchId: 0, leases: [ex.lease(got[0] as LeasedItem), ex.lease(got[1] as LeasedItem, 99)] },
    });
    expect(ext.results.map((r) => r.status)).toEqual([OpStatus.OP_STATUS_OK, OpStatus.OP_STATUS_STALE]);
    expect(ext.results[0]?.leaseExpiresAtMs).toBeGreaterThanOrEqual(got[0]?.leaseExpiresAtMs ?? 0);
    // The extension's answer came after any claim the credits allowed: still exactly 3.
    expect(ex.items).toHaveLength(3);
    const shard = service.queue.shardOf("acct-credits");
    expect(await redis.zcard(service.queue.keys(shard).leased)).toBe(3);

    const retried = await ex.op({
      $case: "retry",
      value: { batchId: 0, items: [{ lease: ex.lease(got[2] as LeasedItem), runAtMs: 0, attempt: 1 }] },
    });
    expect(retried.results[0]?.status).toBe(OpStatus.OP_STATUS_OK);
    const late = await ex.op({
      $case: "complete",
      value: { batchId: 0, items: [{ lease: ex.lease(got[2] as LeasedItem), next: [], handOff: false }] },
    });
    expect(late.results[0]?.status).toBe(OpStatus.OP_STATUS_STALE);

    ex.credits(4);
    const all = await ex.waitItems(7);
    const again = all.slice(3).find((i) => i.item?.id === got[2]?.item?.id);
    expect(again?.item?.attempt).toBe(1);
    expect(again?.generation).toBe(3);
    ex.stream.end();
  });

  it("hands a run's next item to the completing stream at once, before the result that says so", async () => {
    const run = { runId: "run-hand", accountId: "acct-hand" };
    await callUnary(client.enqueue.bind(client), { items: [newItem("run-hand:start", run)] });
    const ex = new Executor();
    ex.credits(1);
    const [start] = await ex.waitItems(1);

    // No credits are left, yet the next step comes at once: the completion carried the slot.
    const done = await ex.op({
      $case: "complete",
      value: {
        batchId: 0,
        items: [{ lease: ex.lease(start as LeasedItem), next: [newItem("run-hand:c1", run)], handOff: true }],
      },
    });
    expect(done.results[0]).toMatchObject({ status: OpStatus.OP_STATUS_OK, handedOff: true });
    // Already here when the result came: sent first, and leased by the completion itself.
    // ...and marked as a hand-off, unlike the item claimed in a round.
    expect(ex.items.map((i) => [i.item?.id, i.generation, i.handedOff])).toEqual([
      ["run-hand:start", 1, false],
      ["run-hand:c1", 1, true],
    ]);

    // A completion whose next call is not due now hands nothing off: it is queued as usual.
    const c1 = ex.items[1] as LeasedItem;
    const later = { ...newItem("run-hand:s1", run), runAtMs: Date.now() + 60_000 };
    const slept = await ex.op({
      $case: "complete",
      value: { batchId: 0, items: [{ lease: ex.lease(c1), next: [later], handOff: true }] },
    });
    expect(slept.results[0]).toMatchObject({ status: OpStatus.OP_STATUS_OK, handedOff: false });
    const keys = service.queue.keys(service.queue.shardOf("acct-hand"));
    expect(await redis.zscore(keys.leased, "run-hand:s1")).toBeNull();
    expect(await redis.hexists(keys.items, "run-hand:s1")).toBe(1);
    ex.stream.end();
  });

  it("leases a new run's start to the stream that enqueued it, spending one of its credits", async () => {
    const acct = { accountId: "acct-starts" };
    const ex = new Executor();
    ex.credits(1);
    const starts = ["st-1:start", "st-2:start"].map((id) =>
      newItem(id, { ...acct, runId: id.split(":")[0], kind: ItemKind.ITEM_KIND_START }),
    );
    const res = await ex.op({ $case: "start", value: { batchId: 0, items: [...starts, newItem("")] } });
    // One credit: the first is handed off (sent before the result), the second waits in line; the
    // item without an id is refused alone.
    expect(res.results.map((r) => [r.itemId, r.status, r.handedOff])).toEqual([
      ["st-1:start", OpStatus.OP_STATUS_OK, true],
      ["st-2:start", OpStatus.OP_STATUS_OK, false],
      ["", OpStatus.OP_STATUS_STALE, false],
    ]);
    expect(ex.items.map((i) => [i.item?.id, i.generation, i.handedOff])).toEqual([["st-1:start", 1, true]]);
    // The hand-off spent the credit: the second comes with the next credit, from a round.
    ex.credits(1);
    const [, second] = await ex.waitItems(2);
    expect([second?.item?.id, second?.handedOff]).toEqual(["st-2:start", false]);
    // Both are leased, each once (the second generation 1: never handed out before).
    const keys = service.queue.keys(service.queue.shardOf("acct-starts"));
    expect(await redis.zmscore(keys.leased, "st-1:start", "st-2:start")).not.toContain(null);
    expect(second?.generation).toBe(1);
    ex.stream.end();
  });

  it("leaves leases in place when a stream closes", async () => {
    await callUnary(client.enqueue.bind(client), {
      items: [newItem("close-1", { accountId: "acct-close" })],
    });
    const ex = new Executor();
    ex.credits(1);
    await ex.waitItems(1);
    ex.stream.cancel();
    const keys = service.queue.keys(service.queue.shardOf("acct-close"));
    expect(await redis.zscore(keys.leased, "close-1")).not.toBeNull();
  });

  it("answers an invalid op STALE on its own and keeps the stream and the rest of the batch", async () => {
    let other = "acct-other-0";
    for (let i = 1; service.queue.shardOf(other) === service.queue.shardOf("acct-x"); i++)
      other = `acct-other-${i}`;
    const x = { accountId: "acct-x" };
    await callUnary(client.enqueue.bind(client), { items: [newItem("x-1", x), newItem("x-2", x)] });
    const ex = new Executor();
    let broke = false;
    ex.stream.on("error", () => {
      broke = true;
    });
    ex.credits(2);
    const [a, b] = (await ex.waitItems(2)) as [LeasedItem, LeasedItem];
    const res = await ex.op({
      $case: "complete",
      value: {
        batchId: 0,
        items: [
          { lease: ex.lease(a), next: [newItem("x-3", { accountId: other })], handOff: false },
          { lease: ex.lease(b), next: [newItem("x-4", x)], handOff: false },
          { lease: undefined, next: [], handOff: false },
        ],
      },
    });
    expect(res.results.map((r) => r.status)).toEqual([
      OpStatus.OP_STATUS_STALE,
      OpStatus.OP_STATUS_OK,
      OpStatus.OP_STATUS_STALE,
    ]);
    const bad = await ex.op({
      $case: "retry",
      value: { batchId: 0, items: [{ lease: ex.lease(a), runAtMs: 0, attempt: -1 }] },
    });
    expect(bad.results[0]?.status).toBe(OpStatus.OP_STATUS_STALE);
    // The refused ops left a's lease alone, and the stream still hands out work.
    const ext = await ex.op({ $case: "extend", value: { batchId: 0, leases: [ex.lease(a)] } });
    expect(ext.results[0]?.status).toBe(OpStatus.OP_STATUS_OK);
    ex.credits(1);
    const [, , next] = await ex.waitItems(3);
    expect(next?.item?.id).toBe("x-4");
    expect(broke).toBe(false);
    ex.stream.end();
  });
});
