// History's Prometheus metrics, on the process's one registry (served at /metrics).
import { metrics } from "@stepline/internal/lifecycle";
import { Counter } from "prom-client";

/** Rows ClickHouse refused, set aside in the dead-letter table, by the table they were for. */
export const deadLettersTotal = new Counter({
  name: "stepline_history_dead_letters_total",
  help: "History rows ClickHouse refused for their content, set aside in the dead_letters table",
  labelNames: ["table"] as const,
  registers: [metrics],
});
