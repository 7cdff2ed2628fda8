import type { ServerDuplexStream } from "@grpc/grpc-js";
import { serveCallStream } from "@stepline/internal/call-stream";
import { ValidationError } from "@stepline/internal/errors";
import type { GrpcServer } from "@stepline/internal/grpc";
import { createClient, startGrpcServer } from "@stepline/internal/grpc";
import { createLogger } from "@stepline/internal/log";
import type {
  EnqueueAnswer,
  EnqueueCall,
  EnqueueStreamRequest,
  EnqueueStreamResponse,
  NewItem,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import {
  EnqueueStatus,
  ItemKind,
  QueueServiceClient,
  QueueServiceService,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import { afterEach, describe, expect, it } from "vitest";
import { queueCalls } from "./peers.js";

const log = createLogger("peers-test", "silent");

/** A queue replica serving EnqueueStream only: records each call's item ids, refuses ids "bad…". */
async function startReplica(calls: string[][]): Promise<GrpcServer> {
  return startGrpcServer("127.0.0.1:0", [
    {
      definition: QueueServiceService,
      implementation: {
        enqueueStream: (call: ServerDuplexStream<EnqueueStreamRequest, EnqueueStreamResponse>) =>
          serveCallStream<EnqueueCall, EnqueueAnswer, EnqueueStreamRequest, EnqueueStreamResponse>(call, {
            calls: (req) => req.calls,
            pack: (answers) => ({ answers }),
            empty: { results: [] },
            log,
            handle: async ({ items }) => {
              calls.push(items.map((i) => i.id));
              if (items.some((i) => i.id.startsWith("bad"))) throw new ValidationError("items[0]: bad id");
              return {
                results: items.map((i) => ({ itemId: i.id, status: EnqueueStatus.ENQUEUE_STATUS_ENQUEUED })),
              };
            },
          }),
      },
    },
  ]);
}

function item(id: string): NewItem {
  return {
    id,
    runId: id,
    accountId: "acct",
    environmentId: "env",
    functionId: "fn",
    kind: ItemKind.ITEM_KIND_START,
    delayMs: 0,
    runAtMs: 0,
    attempt: 0,
    payload: "{}",
    flow: undefined,
    runStartedAtMs: 0,
    traceParent: "",
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Two replicas, and the executor's queue calls over them. */
async function twoReplicas() {
  const calls: [string[][], string[][]] = [[], []];
  const servers = [await startReplica(calls[0]), await startReplica(calls[1])];
  const clients = servers.map((s) => createClient(QueueServiceClient, `127.0.0.1:${s.port}`));
  const ops = queueCalls(clients, 5_000, log);
  cleanups.push(
    () => Promise.all(servers.map((s) => s.close(0))).then(() => undefined),
    () => {
      for (const c of clients) c.close();
    },
    () => ops.close(),
  );
  return { calls, servers, ops };
}

describe("queueCalls: Enqueue on the replicas' EnqueueStreams", () => {
  it("spreads enqueues over the replicas and resolves once each was answered", async () => {
    const { calls, ops } = await twoReplicas();
    for (const id of ["a", "b", "c", "d"]) await ops.enqueue([item(id)]);
    expect(calls[0]).toEqual([["a"], ["c"]]);
    expect(calls[1]).toEqual([["b"], ["d"]]);
  });

  it("goes on to the other replica when one is down", async () => {
    const { calls, servers, ops } = await twoReplicas();
    await servers[0]?.close(0);
    for (const id of ["a", "b", "c"]) await ops.enqueue([item(id)]);
    expect(calls[0]).toEqual([]);
    expect(calls[1]).toEqual([["a"], ["b"], ["c"]]);
  });

  it("fails a refused call with its ValidationError, without trying another replica", async () => {
    const { calls, ops } = await twoReplicas();
    await expect(ops.enqueue([item("bad-1")])).rejects.toBeInstanceOf(ValidationError);
    expect([...calls[0], ...calls[1]]).toEqual([["bad-1"]]);
    await ops.enqueue([item("ok")]);
    expect(calls[1]).toEqual([["ok"]]);
  });
});
