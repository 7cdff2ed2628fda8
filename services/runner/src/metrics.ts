// The runner's consumer metrics, on the process's registry (the admin port's /metrics).
import { metrics } from "@stepline/internal/lifecycle";
import { Counter } from "prom-client";

export const eventsCounter = new Counter({
  name: "stepline_runner_events_total",
  help: "Events consumed, by outcome (matched: started at least one function; unmatched; invalid: undecodable; refused: the executor refused their runs, set aside).",
  labelNames: ["outcome"],
  registers: [metrics],
});
export const runsCounter = new Counter({
  name: "stepline_runner_runs_scheduled_total",
  help: "Runs handed to ExecutorService.ScheduleRuns (counted once per successful call).",
  registers: [metrics],
});
export const waitsCounter = new Counter({
  name: "stepline_runner_waits_resumed_total",
  help: "Waits (step.waitForEvent) an event matched and handed to ExecutorService.ResumePauses.",
  registers: [metrics],
});
export const retriesCounter = new Counter({
  name: "stepline_runner_batch_retries_total",
  help: "Times a batch chunk failed (registry, idempotency or ScheduleRuns) and was retried.",
  registers: [metrics],
});
