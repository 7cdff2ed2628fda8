// The queue's Prometheus metrics, registered once per process on the shared registry.
import { metrics } from "@stepline/internal/lifecycle";
import { Counter, Gauge } from "prom-client";

const registers = [metrics];

export const enqueuedTotal = new Counter({
  name: "stepline_queue_enqueued_total",
  help: "Items enqueued (new ids only).",
  registers,
});
export const leasedTotal = new Counter({
  name: "stepline_queue_leased_total",
  help: "Items leased to executors.",
  registers,
});
export const opsTotal = new Counter({
  name: "stepline_queue_ops_total",
  help: "Completions, retries and extensions, by op and result (ok, stale or invalid).",
  labelNames: ["op", "result"] as const,
  registers,
});
export const handOffsTotal = new Counter({
  name: "stepline_queue_hand_offs_total",
  help: "Completions that asked for a hand-off and start items (op complete or start), by outcome: handed (the item leased to the stream at once), enqueued (it could not be), released (the stream had closed).",
  labelNames: ["op", "outcome"] as const,
  registers,
});
export const reclaimedTotal = new Counter({
  name: "stepline_queue_reclaimed_total",
  help: "Expired leases returned to ready.",
  registers,
});
export const deadLetteredTotal = new Counter({
  name: "stepline_queue_dead_lettered_total",
  help: "Items dead-lettered after too many deliveries.",
  registers,
});
export const redrivenTotal = new Counter({
  name: "stepline_queue_redriven_total",
  help: "Dead-lettered items put back in line by RedriveDeadLetters.",
  registers,
});
export const ownedShards = new Gauge({
  name: "stepline_queue_owned_shards",
  help: "Virtual shards this replica schedules.",
  registers,
});
export const executorCredits = new Gauge({
  name: "stepline_queue_executor_credits",
  help: "Credits granted by connected executors and not used yet.",
  registers,
});
