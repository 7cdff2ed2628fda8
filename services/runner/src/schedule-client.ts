// The runner's client of ExecutorService.ScheduleRunsStream.

import { CallStream } from "@stepline/internal/call-stream";
import type { Logger } from "@stepline/internal/log";
import type {
  ExecutorServiceClient,
  ScheduleRunsAnswer,
  ScheduleRunsCall,
  ScheduleRunsStreamRequest,
  ScheduleRunsStreamResponse,
} from "@stepline/proto/stepline/executor/v1/executor_service";
import type { ScheduleRuns } from "./consumer.js";

/**
 * ScheduleRuns on the executor's ScheduleRunsStream (one long-lived stream, not a unary call per
 * chunk: docs/architecture.md, "Hot path"), with a deadline per call; `close` ends the stream.
 */
export function grpcScheduler(
  client: ExecutorServiceClient,
  deadlineMs: number,
  log: Logger,
): { schedule: ScheduleRuns; close(): Promise<void> } {
  const stream = new CallStream<
    ScheduleRunsCall,
    ScheduleRunsAnswer,
    ScheduleRunsStreamRequest,
    ScheduleRunsStreamResponse
  >({
    open: () => client.scheduleRunsStream(),
    pack: (calls) => ({ calls }),
    unpack: (res) => res.answers,
    deadlineMs,
    sizeOf: (c) => c.runs.reduce((n, r) => n + r.eventsJson.length, 0),
    what: "ScheduleRuns",
    peer: "the executor",
    log,
  });
  return {
    schedule: async (runs) => {
      await stream.call({ runs });
    },
    close: () => stream.close(),
  };
}
