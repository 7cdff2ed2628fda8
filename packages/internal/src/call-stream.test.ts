// The client side of a call stream against a stand-in for the gRPC stream; the server side is
// tested over real gRPC where it is served (services/executor/src/server-control.test.ts for
// checkpoints, server.test.ts for ScheduleRunsStream), and the whole path with the SDK in
// tests/e2e-checkpoint.test.ts.
import { EventEmitter } from "node:events";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { CallStream, UNARY_FOR_MS } from "./call-stream.js";
import { NotFoundError, UnavailableError } from "./errors.js";
import { createLogger } from "./log.js";

const log = createLogger("call-stream-test", "silent");

interface TestCall {
  id: number;
  runId: string;
  body?: string;
}
interface TestAnswer {
  id: number;
  code: number;
  message: string;
  saved: number;
}
interface Req {
  calls: TestCall[];
}
interface Res {
  results: TestAnswer[];
}

class FakeStream extends EventEmitter {
  readonly written: Req[] = [];
  ended = false;
  write(req: Req): boolean {
    this.written.push(req);
    return true;
  }
  end(): void {
    this.ended = true;
  }
  /** The ids of every call written so far. */
  ids(): number[] {
    return this.written.flatMap((w) => w.calls.map((c) => c.id));
  }
  answer(results: Array<Partial<TestAnswer> & { id: number }>): void {
    this.emit("data", { results: results.map((r) => ({ code: 0, message: "", saved: 0, ...r })) });
  }
}

function harness(
  deadlineMs = 5_000,
  maxMessageBytes?: number,
  unary?: (c: Omit<TestCall, "id">) => Promise<{ saved: number }>,
) {
  const opened: FakeStream[] = [];
  const stream = new CallStream<TestCall, TestAnswer, Req, Res>({
    open: () => {
      const s = new FakeStream();
      opened.push(s);
      return s as unknown as ClientDuplexStream<Req, Res>;
    },
    pack: (calls) => ({ calls }),
    unpack: (res) => res.results,
    deadlineMs,
    sizeOf: (c) => c.body?.length ?? 0,
    ...(maxMessageBytes ? { maxMessageBytes } : {}),
    what: "the checkpoint",
    peer: "the executor",
    log,
    ...(unary ? { unary } : {}),
  });
  const client = { checkpoint: (c: Omit<TestCall, "id">) => stream.call(c), close: () => stream.close() };
  return { client, opened };
}

const call = (runId: string): Omit<TestCall, "id"> => ({ runId });

const tick = () => new Promise((r) => setImmediate(r));

describe("CallStream", () => {
  it("sends the calls of one turn in one message on one stream, and settles each with its own answer", async () => {
    const { client, opened } = harness();
    const a = client.checkpoint(call("a"));
    const b = client.checkpoint(call("b"));
    const c = client.checkpoint(call("c"));
    await tick();
    expect(opened).toHaveLength(1);
    const s = opened[0] as FakeStream;
    expect(s.written.map((w) => w.calls.map((x) => x.runId))).toEqual([["a", "b", "c"]]);
    const [ia, ib, ic] = s.ids() as [number, number, number];
    // Answered out of order, and apart.
    s.answer([{ id: ic, code: status.NOT_FOUND, message: "run c not found" }]);
    s.answer([
      { id: ia, saved: 1 },
      { id: ib, code: status.ALREADY_EXISTS, message: "run b has ended" },
    ]);
    await expect(a).resolves.toMatchObject({ id: ia, saved: 1 });
    await expect(b).rejects.toMatchObject({ name: "ConflictError", message: "run b has ended" });
    await expect(c).rejects.toBeInstanceOf(NotFoundError);
    // A later call reuses the stream.
    const d = client.checkpoint(call("d"));
    await tick();
    expect(opened).toHaveLength(1);
    s.answer([{ id: s.ids()[3] as number }]);
    await expect(d).resolves.toMatchObject({ saved: 0 });
  });

  it("splits a turn's calls into messages under the size limit, a bigger call going alone", async () => {
    const { client, opened } = harness(5_000, 1_000);
    const sizes = [300, 300, 300, 2_000, 100, 100];
    const calls = sizes.map((n, i) => client.checkpoint({ runId: `r${i}`, body: "x".repeat(n) }));
    await tick();
    const s = opened[0] as FakeStream;
    expect(s.written.map((w) => w.calls.map((c) => c.runId))).toEqual([
      ["r0", "r1"],
      ["r2"],
      ["r3"],
      ["r4", "r5"],
    ]);
    s.answer(s.ids().map((id) => ({ id })));
    await expect(Promise.all(calls)).resolves.toHaveLength(sizes.length);
  });

  it("fails the calls sent on a stream that broke as unavailable, and opens a new one for the next", async () => {
    const { client, opened } = harness();
    const sent = client.checkpoint(call("a"));
    await tick();
    const first = opened[0] as FakeStream;
    // Made before the break, flushed after it: it goes on the new stream, not failed with the old.
    const queued = client.checkpoint(call("b"));
    first.emit(
      "error",
      Object.assign(new Error("14 UNAVAILABLE: connection reset"), { code: status.UNAVAILABLE }),
    );
    await expect(sent).rejects.toBeInstanceOf(UnavailableError);
    await tick();
    expect(opened).toHaveLength(2);
    const second = opened[1] as FakeStream;
    expect(second.written.flatMap((w) => w.calls.map((c) => c.runId))).toEqual(["b"]);
    second.answer([{ id: second.ids()[0] as number }]);
    await expect(queued).resolves.toMatchObject({ code: 0 });
  });

  describe("a peer that does not serve the stream (UNIMPLEMENTED)", () => {
    afterEach(() => {
      vi.useRealTimers();
    });
    const unimplemented = () =>
      Object.assign(new Error("12 UNIMPLEMENTED: The server does not implement the method"), {
        code: status.UNIMPLEMENTED,
      });

    it("makes the calls sent on it unary, and the next ones too until it tries the stream again", async () => {
      vi.useFakeTimers({ toFake: ["Date"] });
      const unaryCalls: string[] = [];
      const { client, opened } = harness(5_000, undefined, async (c) => {
        unaryCalls.push(c.runId);
        return { saved: c.runId.length };
      });
      const sent = [client.checkpoint(call("a")), client.checkpoint(call("bb"))];
      await tick();
      (opened[0] as FakeStream).emit("error", unimplemented());
      await expect(Promise.all(sent)).resolves.toMatchObject([{ saved: 1 }, { saved: 2 }]);
      await expect(client.checkpoint(call("ccc"))).resolves.toMatchObject({ code: 0, saved: 3 });
      expect(unaryCalls).toEqual(["a", "bb", "ccc"]);
      expect(opened).toHaveLength(1);
      // Once the while is over, the stream is tried again (the peer may have been upgraded).
      vi.setSystemTime(Date.now() + UNARY_FOR_MS + 1);
      const later = client.checkpoint(call("d"));
      await tick();
      expect(opened).toHaveLength(2);
      const second = opened[1] as FakeStream;
      second.answer([{ id: second.ids()[0] as number, saved: 7 }]);
      await expect(later).resolves.toMatchObject({ saved: 7 });
      expect(unaryCalls).toEqual(["a", "bb", "ccc"]);
    });

    it("fails the calls as unavailable when there is no unary call to fall back on", async () => {
      const { client, opened } = harness();
      const sent = client.checkpoint(call("a"));
      await tick();
      (opened[0] as FakeStream).emit("error", unimplemented());
      await expect(sent).rejects.toBeInstanceOf(UnavailableError);
    });

    it("passes a unary call's error on", async () => {
      const { client, opened } = harness(5_000, undefined, async () => {
        throw new NotFoundError("run a not found");
      });
      const sent = client.checkpoint(call("a"));
      await tick();
      (opened[0] as FakeStream).emit("error", unimplemented());
      await expect(sent).rejects.toThrow(NotFoundError);
    });
  });

  it("fails a call not answered within the deadline, and ignores a late answer", async () => {
    const { client, opened } = harness(50);
    const t0 = Date.now();
    const lost = client.checkpoint(call("a"));
    await expect(lost).rejects.toThrow(/did not answer the checkpoint within 50 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    const s = opened[0] as FakeStream;
    expect(() => s.answer([{ id: s.ids()[0] as number }])).not.toThrow();
  });

  it("fails the calls of a turn as unavailable when the stream cannot be opened", async () => {
    const stream = new CallStream<TestCall, TestAnswer, Req, Res>({
      open: () => {
        throw new Error("Channel has been shut down");
      },
      pack: (calls) => ({ calls }),
      unpack: (res) => res.results,
      deadlineMs: 5_000,
      sizeOf: () => 0,
      what: "the checkpoint",
      peer: "the executor",
      log,
    });
    await expect(stream.call({ runId: "a" })).rejects.toThrow(/the executor is unavailable: .*shut down/);
  });

  it("closes the stream once the calls in flight are answered, and refuses new ones", async () => {
    const { client, opened } = harness();
    const inFlight = client.checkpoint(call("a"));
    await tick();
    const s = opened[0] as FakeStream;
    const closed = client.close();
    await expect(client.checkpoint(call("b"))).rejects.toBeInstanceOf(UnavailableError);
    expect(s.ended).toBe(false);
    s.answer([{ id: s.ids()[0] as number }]);
    await inFlight;
    await closed;
    expect(s.ended).toBe(true);
  });
});
