// SDK v4 checkpoints go to the executor on one long-lived ExecutorService.Checkpoints stream, not
// a unary call each (docs/architecture.md, "Hot path"): the checkpoints of one turn of the event
// loop travel in one message, and each is answered by id. The stream opens on first use and again
// after it breaks; a checkpoint in flight on a broken stream, or unanswered within the deadline,
// fails with UnavailableError (the SDK retries it, and a checkpoint is idempotent).

import type { ClientDuplexStream } from "@grpc/grpc-js";
import { fromGrpcError, UnavailableError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type {
  CheckpointCall,
  CheckpointsRequest,
  CheckpointsResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";

type Stream = ClientDuplexStream<CheckpointsRequest, CheckpointsResponse>;

interface Waiting {
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  /** The stream it was sent on (none while it waits for the next flush). */
  sentOn?: Stream;
}

export class CheckpointStream {
  private call: Stream | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private batch: CheckpointCall[] = [];
  private flushScheduled = false;
  private lastId = 0;
  private closed = false;

  constructor(
    private readonly open: () => Stream,
    private readonly deadlineMs: number,
    private readonly log: Logger,
  ) {}

  /** Saves one checkpoint; rejects with the error the executor gave it (the closed error set). */
  checkpoint(c: Omit<CheckpointCall, "id">): Promise<void> {
    if (this.closed) return Promise.reject(new UnavailableError("event-api is shutting down; retry"));
    // Ids wrap long before a call could still be waiting under an old one (deadlines are seconds).
    this.lastId = this.lastId >= 0xffffffff ? 1 : this.lastId + 1;
    const id = this.lastId;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new UnavailableError(
            `the executor did not answer the checkpoint within ${this.deadlineMs} ms; retry`,
          ),
        );
      }, this.deadlineMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.batch.push({ ...c, id });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Ends the stream once the checkpoints waiting for an answer have theirs (or their deadline). */
  async close(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + this.deadlineMs;
    while (this.waiting.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.call?.end();
    this.call = undefined;
  }

  private flush(): void {
    this.flushScheduled = false;
    const calls = this.batch;
    this.batch = [];
    if (calls.length === 0) return;
    const stream = this.stream();
    for (const c of calls) {
      const w = this.waiting.get(c.id);
      if (w) w.sentOn = stream;
    }
    stream.write({ calls });
  }

  private stream(): Stream {
    if (this.call) return this.call;
    const call = this.open();
    this.call = call;
    call.on("data", (res: CheckpointsResponse) => {
      for (const r of res.results) {
        const w = this.waiting.get(r.id);
        if (!w) continue;
        this.waiting.delete(r.id);
        clearTimeout(w.timer);
        if (r.code === 0) w.resolve();
        else w.reject(fromGrpcError({ code: r.code, details: r.message }));
      }
    });
    const broken = (err?: Error) => {
      if (this.call !== call) return;
      this.call = undefined;
      if (err) this.log.warn({ err: err.message }, "checkpoint stream to the executor broke");
      // What was sent on it may or may not have been saved; the SDK retries, which is safe.
      const lost = fromGrpcError(err ?? { code: 14, details: "the checkpoint stream ended" });
      const failure =
        lost instanceof UnavailableError
          ? lost
          : new UnavailableError(`the executor is unavailable: ${lost.message}`);
      for (const [id, w] of this.waiting) {
        if (w.sentOn !== call) continue;
        clearTimeout(w.timer);
        w.reject(failure);
        this.waiting.delete(id);
      }
    };
    call.on("error", (err: Error) => broken(err));
    call.on("end", () => broken());
    return call;
  }
}
