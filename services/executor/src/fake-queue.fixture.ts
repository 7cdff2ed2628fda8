// A small in-test QueueService peer over real gRPC for the Work stream tests: it grants leases
// against the credits it received and answers ops; the queue's own logic is tested in services/queue.
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import type {
  LeasedItem,
  NewItem,
  OpResult,
  WorkRequest,
  WorkResponse,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import {
  ItemKind,
  OpStatus,
  QueueServiceClient,
  QueueServiceService,
} from "@stepline/proto/stepline/queue/v1/queue_service";

type Req = NonNullable<WorkRequest["request"]>;
/** Request body by kind, e.g. Bodies["credits"] is Credits. */
type Bodies = { [R in Req as R["$case"]]: R["value"] };

export class FakeQueue {
  credits = 0;
  creditsGranted = 0;
  /** Completions that asked for a hand-off. */
  handOffs = 0;
  /** True: a hand-off leases its first due-now next item to the stream, as the queue does; false: never. */
  handOver = true;
  requests: WorkRequest[] = [];
  waiting: LeasedItem[] = [];
  connections = 0;
  extendStatus = OpStatus.OP_STATUS_OK;
  /** When false, completions and starts are received but never answered. */
  answerOps = true;
  leaseMs = 30_000;
  call: ServerDuplexStream<WorkRequest, WorkResponse> | undefined;

  work(call: ServerDuplexStream<WorkRequest, WorkResponse>): void {
    this.call = call;
    this.credits = 0;
    this.connections++;
    call.on("data", (req: WorkRequest) => this.onRequest(call, req));
    call.on("end", () => call.end());
    call.on("error", () => undefined);
  }

  offer(...items: NewItem[]): void {
    this.offerReleased(0, ...items);
  }

  /** Offers items that were released `releases` times in a row before (LeasedItem.releases). */
  offerReleased(releases: number, ...items: NewItem[]): void {
    const now = Date.now();
    this.waiting.push(
      ...items.map((item) => ({
        item,
        generation: 1,
        leaseExpiresAtMs: now + this.leaseMs,
        partitionId: "fn:env:fn",
        handedOff: false,
        releases,
      })),
    );
    this.pump();
  }

  breakStream(): void {
    // grpc-js sends an error status to the client when a server stream emits "error".
    this.call?.emit("error", { code: status.UNAVAILABLE, details: "queue restarted" });
    this.call = undefined;
  }

  /** The bodies of every request of one kind received so far. */
  of<K extends keyof Bodies>(kind: K): Array<Bodies[K]> {
    return this.requests.flatMap((r) => (r.request?.$case === kind ? [r.request.value as Bodies[K]] : []));
  }

  private onRequest(call: ServerDuplexStream<WorkRequest, WorkResponse>, req: WorkRequest): void {
    this.requests.push(req);
    const r = req.request;
    if (!r) return;
    if (r.$case === "credits") {
      this.credits += r.value.count;
      this.creditsGranted += r.value.count;
      this.pump();
      return;
    }
    let results: OpResult[];
    if (r.$case === "complete") {
      if (!this.answerOps) return;
      const handed: LeasedItem[] = [];
      results = r.value.items.map((c) => {
        if (!c.handOff) return ok(c.lease?.itemId ?? "");
        this.handOffs++;
        const next = this.handOver ? c.next.find((n) => n.runAtMs <= 0 && n.delayMs <= 0) : undefined;
        if (next) {
          handed.push({
            item: next,
            generation: 1,
            leaseExpiresAtMs: Date.now() + this.leaseMs,
            partitionId: "fn:env:fn",
            handedOff: true,
            releases: 0,
          });
        }
        return { ...ok(c.lease?.itemId ?? ""), handedOff: next !== undefined };
      });
      // The queue sends handed-off items before the results.
      if (handed.length > 0) call.write({ response: { $case: "items", value: { items: handed } } });
    } else if (r.$case === "start") {
      if (!this.answerOps) return;
      // As the queue does: each start takes one of the stream's credits when it has one, and is
      // sent before the results; the others wait in line.
      const handed: LeasedItem[] = [];
      results = r.value.items.map((item) => {
        if (!this.handOver || this.credits <= 0) {
          this.offer(item);
          return ok(item.id);
        }
        this.credits--;
        handed.push({
          item,
          generation: 1,
          leaseExpiresAtMs: Date.now() + this.leaseMs,
          partitionId: "fn:env:fn",
          handedOff: true,
          releases: 0,
        });
        return { ...ok(item.id), handedOff: true };
      });
      if (handed.length > 0) call.write({ response: { $case: "items", value: { items: handed } } });
    } else if (r.$case === "retry") {
      results = r.value.items.map((c) => ok(c.lease?.itemId ?? ""));
    } else {
      results = r.value.leases.map((l) => ({
        itemId: l.itemId,
        status: this.extendStatus,
        leaseExpiresAtMs: Date.now() + this.leaseMs,
        handedOff: false,
      }));
    }
    call.write({ response: { $case: "results", value: { batchId: r.value.batchId, results } } });
    this.pump();
  }

  private pump(): void {
    if (!this.call || this.credits <= 0 || this.waiting.length === 0) return;
    const items = this.waiting.splice(0, this.credits);
    this.credits -= items.length;
    this.call.write({ response: { $case: "items", value: { items } } });
  }
}

const ok = (itemId: string): OpResult => ({
  itemId,
  status: OpStatus.OP_STATUS_OK,
  leaseExpiresAtMs: 0,
  handedOff: false,
});

export function item(id: string, attempt = 0): NewItem {
  return {
    id,
    runId: id.split(":")[0] ?? id,
    accountId: "acct",
    environmentId: "env",
    functionId: "fn",
    kind: ItemKind.ITEM_KIND_STEP,
    delayMs: 0,
    runAtMs: 0,
    attempt,
    payload: '{"stepId":"step"}',
    flow: undefined,
    runStartedAtMs: 0,
    traceParent: "",
  };
}

/** A FakeQueue served on a free port, with a client to it. */
export async function serveFakeQueue(): Promise<{
  fake: FakeQueue;
  client: QueueServiceClient;
  close(): Promise<void>;
}> {
  const fake = new FakeQueue();
  const server: GrpcServer = await startGrpcServer("127.0.0.1:0", [
    {
      definition: QueueServiceService,
      implementation: {
        enqueue: (_call: unknown, cb: (err: null, res: { results: [] }) => void) => cb(null, { results: [] }),
        work: (call: ServerDuplexStream<WorkRequest, WorkResponse>) => fake.work(call),
      },
    },
  ]);
  const client = createClient(QueueServiceClient, `127.0.0.1:${server.port}`);
  return {
    fake,
    client,
    async close() {
      client.close();
      await server.close(100);
    },
  };
}
