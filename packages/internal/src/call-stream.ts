// Calls with the shape of a unary RPC, carried on one long-lived bidirectional stream instead
// (docs/architecture.md, "Hot path: streams, not unary calls"): a grpc-js unary call opens an
// HTTP/2 stream, sends headers and trailers, and arms a deadline per call, which costs several
// times a message on an open stream in CPU and, between processes that were idle, about a
// millisecond more in latency.
//
// Client: the calls of one turn of the event loop travel in one message, each with an id; each
// answer names its call's id and carries either a result or the gRPC status code the call failed
// with. The stream opens on first use and again after it breaks. A call in flight on a broken
// stream, or unanswered within the deadline, fails with UnavailableError: it may or may not have
// taken effect, so only idempotent calls belong on a call stream (the caller retries them).
//
// A peer of an older version may not serve the stream at all (UNIMPLEMENTED): given `unary`, the
// client then makes its calls one by one on the unary RPC instead, and tries the stream again
// after a while (the peer may have been upgraded meanwhile).
//
// Server: each message's calls run concurrently and are answered together once all are done; the
// stream ends when the client ends it, after the answers of the messages in flight.

import type { ClientDuplexStream, ServerDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { fromGrpcError, toGrpcError, UnavailableError } from "./errors.js";
import type { Logger } from "./log.js";

/** What every call on a call stream carries. */
export interface StreamCall {
  id: number;
}

/** What every answer on a call stream carries: its call's id, and 0 or a gRPC status code. */
export interface StreamAnswer {
  id: number;
  code: number;
  message: string;
}

export interface CallStreamOptions<C extends StreamCall, A extends StreamAnswer, Req, Res> {
  open(): ClientDuplexStream<Req, Res>;
  /** One request message carrying `calls`. */
  pack(calls: C[]): Req;
  /** The answers a response message carries. */
  unpack(res: Res): A[];
  deadlineMs: number;
  /**
   * About how many bytes a call adds to a message (its large fields): a turn's calls are split
   * into messages of at most `maxMessageBytes` (one bigger call goes alone), under gRPC's cap.
   */
  sizeOf(call: C): number;
  /** Default 4 MiB, a quarter of the 16 MiB gRPC message cap (grpc.ts). */
  maxMessageBytes?: number;
  /** What a call is and who answers it, for error messages: "the checkpoint", "the executor". */
  what: string;
  peer: string;
  log: Logger;
  /**
   * The same call as a unary RPC, for a peer that does not serve the stream: its answer's payload,
   * or an error of the closed set. Without it, such a peer's calls fail as unavailable.
   */
  unary?: (call: Omit<C, "id">) => Promise<Omit<A, keyof StreamAnswer>>;
}

/** How long calls go unary after a peer answered that it does not serve the stream. */
export const UNARY_FOR_MS = 60_000;

interface Waiting<C, A> {
  /** The call, kept to be made unary should the peer not serve the stream. */
  call: Omit<C, "id">;
  resolve(answer: A): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  /** The stream it was sent on (none while it waits for the next flush). */
  sentOn?: unknown;
}

/** The client side: `call` resolves with the call's answer, or rejects with the closed error set. */
export class CallStream<C extends StreamCall, A extends StreamAnswer, Req, Res> {
  private stream: ClientDuplexStream<Req, Res> | undefined;
  private readonly waiting = new Map<number, Waiting<C, A>>();
  private batch: C[] = [];
  private flushScheduled = false;
  private lastId = 0;
  private closed = false;
  /** Until when calls go unary (clock ms): the peer did not serve the stream. */
  private unaryUntil = 0;
  /** Unary calls in flight (close waits for them too). */
  private unaryInFlight = 0;

  constructor(private readonly opts: CallStreamOptions<C, A, Req, Res>) {}

  call(c: Omit<C, "id">): Promise<A> {
    if (this.closed) return Promise.reject(new UnavailableError("shutting down; retry"));
    if (this.opts.unary && Date.now() < this.unaryUntil) return this.makeUnary(this.opts.unary, c);
    // Ids wrap long before a call could still be waiting under an old one (deadlines are seconds).
    this.lastId = this.lastId >= 0xffffffff ? 1 : this.lastId + 1;
    const id = this.lastId;
    return new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new UnavailableError(
            `${this.opts.peer} did not answer ${this.opts.what} within ${this.opts.deadlineMs} ms; retry`,
          ),
        );
      }, this.opts.deadlineMs);
      this.waiting.set(id, { call: c, resolve, reject, timer });
      this.batch.push({ ...c, id } as C);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Ends the stream once the calls waiting for an answer have theirs (or their deadline). */
  async close(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + this.opts.deadlineMs;
    while ((this.waiting.size > 0 || this.unaryInFlight > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    this.stream?.end();
    this.stream = undefined;
  }

  private flush(): void {
    this.flushScheduled = false;
    const calls = this.batch;
    this.batch = [];
    if (calls.length === 0) return;
    let stream: ClientDuplexStream<Req, Res>;
    try {
      stream = this.current();
    } catch (err) {
      // The client was closed under us (shutdown): nothing can be sent; the callers retry.
      for (const c of calls)
        this.fail(c.id, new UnavailableError(`${this.opts.peer} is unavailable: ${String(err)}`));
      return;
    }
    for (const c of calls) {
      const w = this.waiting.get(c.id);
      if (w) w.sentOn = stream;
    }
    const max = this.opts.maxMessageBytes ?? 4 * 1024 * 1024;
    let part: C[] = [];
    let bytes = 0;
    for (const c of calls) {
      const size = this.opts.sizeOf(c) + 64;
      if (part.length > 0 && bytes + size > max) {
        stream.write(this.opts.pack(part));
        part = [];
        bytes = 0;
      }
      part.push(c);
      bytes += size;
    }
    stream.write(this.opts.pack(part));
  }

  private async makeUnary(
    unary: NonNullable<CallStreamOptions<C, A, Req, Res>["unary"]>,
    c: Omit<C, "id">,
  ): Promise<A> {
    this.unaryInFlight++;
    try {
      return { ...(await unary(c)), id: 0, code: 0, message: "" } as A;
    } finally {
      this.unaryInFlight--;
    }
  }

  private fail(id: number, err: Error): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    w.reject(err);
  }

  private current(): ClientDuplexStream<Req, Res> {
    if (this.stream) return this.stream;
    const stream = this.opts.open();
    this.stream = stream;
    stream.on("data", (res: Res) => {
      for (const a of this.opts.unpack(res)) {
        const w = this.waiting.get(a.id);
        if (!w) continue;
        this.waiting.delete(a.id);
        clearTimeout(w.timer);
        if (a.code === 0) w.resolve(a);
        else w.reject(fromGrpcError({ code: a.code, details: a.message }));
      }
    });
    const broken = (err?: Error) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      const unary = this.opts.unary;
      if (unary && (err as { code?: number } | undefined)?.code === status.UNIMPLEMENTED) {
        // An older peer: none of the calls reached it, so each is made again, unary.
        this.unaryUntil = Date.now() + UNARY_FOR_MS;
        this.opts.log.warn(
          { peer: this.opts.peer, forMs: UNARY_FOR_MS },
          `${this.opts.peer} does not serve this call stream (an older version?): making calls one by one`,
        );
        for (const [id, w] of this.waiting) {
          if (w.sentOn !== stream) continue;
          this.waiting.delete(id);
          clearTimeout(w.timer);
          this.makeUnary(unary, w.call).then(w.resolve, w.reject);
        }
        return;
      }
      if (err) this.opts.log.warn({ err: err.message, peer: this.opts.peer }, "call stream broke");
      const lost = fromGrpcError(err ?? { code: 14, details: "the stream ended" });
      const failure =
        lost instanceof UnavailableError
          ? lost
          : new UnavailableError(`${this.opts.peer} is unavailable: ${lost.message}`);
      for (const [id, w] of this.waiting) if (w.sentOn === stream) this.fail(id, failure);
    };
    stream.on("error", (err: Error) => broken(err));
    stream.on("end", () => broken());
    return stream;
  }
}

export interface ServeCallStreamOptions<C extends StreamCall, A extends StreamAnswer, Req, Res> {
  /** The calls a request message carries. */
  calls(req: Req): C[];
  /** One response message carrying `answers`. */
  pack(answers: A[]): Res;
  /** Runs one call: its answer's payload, or throws an error of the closed set. */
  handle(call: C): Promise<Omit<A, keyof StreamAnswer>>;
  /** The payload of a failed call's answer. */
  empty: Omit<A, keyof StreamAnswer>;
  log: Logger;
}

/** The server side of a call stream: see the module comment. */
export function serveCallStream<C extends StreamCall, A extends StreamAnswer, Req, Res>(
  stream: ServerDuplexStream<Req, Res>,
  opts: ServeCallStreamOptions<C, A, Req, Res>,
): void {
  let pending = 0;
  let clientDone = false;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    stream.end();
  };
  const answer = async (c: C): Promise<A> => {
    try {
      return { ...(await opts.handle(c)), id: c.id, code: 0, message: "" } as A;
    } catch (err) {
      const mapped = toGrpcError(err);
      if (mapped.code === 13) opts.log.error({ err, path: stream.getPath() }, "call stream handler failed");
      return { ...opts.empty, id: c.id, code: mapped.code ?? 13, message: mapped.details ?? "" } as A;
    }
  };
  stream.on("data", (req: Req) => {
    pending++;
    void Promise.all(opts.calls(req).map(answer)).then((answers) => {
      pending--;
      if (!ended) stream.write(opts.pack(answers));
      if (clientDone && pending === 0) end();
    });
  });
  stream.on("end", () => {
    clientDone = true;
    if (pending === 0) end();
  });
  // A cancelled stream (the client is gone): its answers have nowhere to go.
  stream.on("cancelled", () => {
    ended = true;
  });
  stream.on("error", () => {
    ended = true;
  });
}
