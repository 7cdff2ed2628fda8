// The executor's calls to other services, as the plain functions its parts take: enqueue and
// remove on any queue replica, the runner's fire calls (cron ticks, debounces, batches), and
// signing keys from event-api's TenantService.
import type { Clock } from "@stepline/internal/clock";
import { NotFoundError } from "@stepline/internal/errors";
import { callUnary } from "@stepline/internal/grpc";
import type { TenantServiceClient } from "@stepline/proto/stepline/eventapi/v1/tenant_service";
import type { NewItem, QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";
import type { RunnerServiceClient } from "@stepline/proto/stepline/runner/v1/runner_service";
import { AnyReplica } from "./any-replica.js";
import type { BufferFire } from "./buffer-fire.js";
import type { ExecuteDeps } from "./execute.js";
import { SigningKeys } from "./signing-keys.js";

/** QueueService calls any replica answers, spread over `queues`. */
export function queueCalls(queues: QueueServiceClient[]): Pick<ExecuteDeps, "enqueue" | "remove"> {
  const any = new AnyReplica(queues);
  return {
    async enqueue(items: NewItem[]) {
      await any.call((queue) => callUnary(queue.enqueue.bind(queue), { items }));
    },
    async remove(items: Array<{ itemId: string; accountId: string }>) {
      await any.call((queue) => callUnary(queue.remove.bind(queue), { items }));
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
