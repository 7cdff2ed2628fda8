// Enqueueing over gRPC, for crons and buffers: any queue replica takes an enqueue.
import { callUnary } from "@stepline/internal/grpc";
import type { NewItem, QueueServiceClient } from "@stepline/proto/stepline/queue/v1/queue_service";

export function grpcEnqueue(
  queue: QueueServiceClient,
  deadlineMs: number,
): (items: NewItem[]) => Promise<void> {
  return async (items) => {
    await callUnary(queue.enqueue.bind(queue), { items }, deadlineMs);
  };
}
