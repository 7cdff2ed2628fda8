// The executor's calls to other services, as the plain functions its parts take: enqueue and
// remove on any queue replica, the runner's fire calls (cron ticks, debounces, batches), and
// signing keys from event-api's TenantService.
import { CallStream } from "@stepline/internal/call-stream";
import type { Clock } from "@stepline/internal/clock";
import { NotFoundError } from "@stepline/internal/errors";
import { callUnary } from "@stepline/internal/grpc";
import type { Logger } from "@stepline/internal/log";
import type { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import type {
  EnqueueAnswer,
  EnqueueCall,
  EnqueueStreamRequest,
  EnqueueStreamResponse,
  NewItem,
  QueueServiceClient,
} from "@stepline/proto/stepline/queue/v1/queue_service";
import type { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { AnyReplica } from "./any-replica.js";
import type { BufferFire } from "./buffer-fire.js";
import type { ExecuteDeps } from "./execute.js";
import { SigningKeys } from "./signing-keys.js";

/**
 * QueueService calls any replica answers, spread over `queues`: Enqueue (every new run's start
 * item, and the items of resumes and cancels) on each replica's EnqueueStream, opened on first use, with a deadline of `deadlineMs`;
 * Remove (cancels only) unary. `close` ends the streams once their calls are answered.
 */
export function queueCalls(
  queues: QueueServiceClient[],
  deadlineMs: number,
  log: Logger,
): Pick<ExecuteDeps, "enqueue" | "remove"> & { close(): Promise<void> } {
  const streams = queues.map(
    (queue) =>
      new CallStream<EnqueueCall, EnqueueAnswer, EnqueueStreamRequest, EnqueueStreamResponse>({
        open: () => queue.enqueueStream(),
        pack: (calls) => ({ calls }),
        unpack: (res) => res.answers,
        deadlineMs,
        sizeOf: (c) => c.items.reduce((n, i) => n + i.id.length + i.payload.length, 0),
        what: "Enqueue",
        peer: "the queue",
        log,
      }),
  );
  const anyStream = new AnyReplica(streams);
  const anyQueue = new AnyReplica(queues);
  return {
    async enqueue(items: NewItem[]) {
      await anyStream.call((stream) => stream.call({ items }));
    },
    async remove(items: Array<{ itemId: string; accountId: string }>) {
      await anyQueue.call((queue) => callUnary(queue.remove.bind(queue), { items }));
    },
    close: async () => {
      await Promise.all(streams.map((s) => s.close()));
    },
  };
}

/** RunnerService's fire calls, each with a deadline of `timeoutMs`. */
export function runnerFires(
  runner: RunnerServiceClient,
  timeoutMs: number,
): Pick<ExecuteDeps, "fireCron" | "fireDebounce" | "fireBatch"> {
  return {
    fireCron: (req) => callUnary(runner.fireCron.bind(runner), req, timeoutMs),
    fireDebounce: (req: BufferFire) =>
      callUnary(runner.fireDebounce.bind(runner), { ...req, debounceId: req.id }, timeoutMs),
    fireBatch: (req: BufferFire) =>
      callUnary(runner.fireBatch.bind(runner), { ...req, batchId: req.id }, timeoutMs),
  };
}

/** Environments' signing keys from TenantService, each cached for `cacheMs`. */
export function tenantSigningKeys(tenants: TenantServiceClient, cacheMs: number, clock: Clock): SigningKeys {
  return new SigningKeys(
    async (environmentId) => {
      const res = await callUnary(tenants.getEnvironment.bind(tenants), { environmentId });
      const key = res.environment?.signingKey;
      if (!key) throw new NotFoundError(`environment ${environmentId} has no signing key`);
      return key;
    },
    cacheMs,
    clock,
  );
}
