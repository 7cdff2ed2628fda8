// The checkpoint stream's client side, against a stand-in for the gRPC stream (the executor's
// side is tested over real gRPC in services/executor/src/server-control.test.ts, and the whole
// path with the SDK in tests/e2e-checkpoint.test.ts).
import { EventEmitter } from "node:events";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { NotFoundError, UnavailableError } from "@stepline/internal/errors";
import { createLogger } from "@stepline/internal/log";
import type {
  CheckpointCall,
  CheckpointsRequest,
  CheckpointsResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import { describe, expect, it } from "vitest";
import { CheckpointStream } from "./checkpoint-stream.js";

const log = createLogger("checkpoint-stream-test", "silent");

class FakeStream extends EventEmitter {
  readonly written: CheckpointsRequest[] = [];
  ended = false;
  write(req: CheckpointsRequest): boolean {
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
  answer(results: Array<Partial<CheckpointsResponse["results"][number]> & { id: number }>): void {
    this.emit("data", { results: results.map((r) => ({ code: 0, message: "", saved: 0, ...r })) });
  }
}

function harness(deadlineMs = 5_000) {
  const opened: FakeStream[] = [];
  const client = new CheckpointStream(
    () => {
      const s = new FakeStream();
      opened.push(s);
      return s as unknown as ClientDuplexStream<CheckpointsRequest, CheckpointsResponse>;
    },
    deadlineMs,
    log,
  );
  return { client, opened };
}

const call = (runId: string): Omit<CheckpointCall, "id"> => ({
  environmentId: "env",
  runId,
  queueItemId: `${runId}:start`,
  stepsJson: "[]",
});

const tick = () => new Promise((r) => setImmediate(r));

describe("CheckpointStream", () => {
  it("sends the checkpoints of one turn in one message on one stream, and settles each by its id", async () => {
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
    await expect(a).resolves.toBeUndefined();
    await expect(b).rejects.toMatchObject({ name: "ConflictError", message: "run b has ended" });
    await expect(c).rejects.toBeInstanceOf(NotFoundError);
    // A later checkpoint reuses the stream.
    const d = client.checkpoint(call("d"));
    await tick();
    expect(opened).toHaveLength(1);
    s.answer([{ id: s.ids()[3] as number }]);
    await expect(d).resolves.toBeUndefined();
  });

  it("fails the checkpoints sent on a stream that broke as unavailable, and opens a new one for the next", async () => {
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
    await expect(queued).resolves.toBeUndefined();
  });

  it("fails a checkpoint the executor does not answer within the deadline, and ignores a late answer", async () => {
    const { client, opened } = harness(50);
    const t0 = Date.now();
    const lost = client.checkpoint(call("a"));
    await expect(lost).rejects.toThrow(/did not answer the checkpoint within 50 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    const s = opened[0] as FakeStream;
    expect(() => s.answer([{ id: s.ids()[0] as number }])).not.toThrow();
  });

  it("closes the stream once the checkpoints in flight are answered, and refuses new ones", async () => {
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
