// The executor's Prometheus metrics, on the process's one registry (served at /metrics).
import { metrics } from "@stepline/internal/lifecycle";
import { Counter, Gauge, Histogram } from "prom-client";

/** Calls to apps by what came of them (continue, retry, complete, fail). */
export const callsTotal = new Counter({
  name: "stepline_executor_calls_total",
  help: "Calls to apps, by the decision their answer led to",
  labelNames: ["decision"] as const,
  registers: [metrics],
});

export const eventsSentTotal = new Counter({
  name: "stepline_executor_events_sent_total",
  help: "Stepline's own events produced to Kafka (function finished/failed/cancelled/invoked)",
  registers: [metrics],
});

export const localCallsTotal = new Counter({
  name: "stepline_executor_calls_on_lease_total",
  help: "Calls a lease made after its first, for runs in plain sequential progress (STEPLINE_EXECUTOR_CALLS_PER_LEASE)",
  registers: [metrics],
});

/** Time from sending a call to having its whole answer. */
export const callSeconds = new Histogram({
  name: "stepline_executor_call_duration_seconds",
  help: "Duration of calls to apps",
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  registers: [metrics],
});

/** Runs ended, by status. */
export const runsEndedTotal = new Counter({
  name: "stepline_executor_runs_ended_total",
  help: "Runs that ended, by status",
  labelNames: ["status"] as const,
  registers: [metrics],
});

/** Items handed back without spending an attempt (ItemContext.release). */
export const releasesTotal = new Counter({
  name: "stepline_executor_releases_total",
  help: "Items released to the queue with their attempt unchanged because the engine's own dependencies failed",
  registers: [metrics],
});

/** History records not sent whole: set aside, dropped from a full backlog, or sent without their payload. */
export const historyDroppedTotal = new Counter({
  name: "stepline_executor_history_records_dropped_total",
  help: "History records Kafka refused (refused), dropped from a full backlog (backlog_full), or sent with their output and error left out (too_large_payload), or not encodable (unencodable)",
  labelNames: ["reason"] as const,
  registers: [metrics],
});

/** Items held from the queue right now. */
export const itemsInFlight = new Gauge({
  name: "stepline_executor_items_in_flight",
  help: "Leased items being worked on",
  registers: [metrics],
});
