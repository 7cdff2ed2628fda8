// The history service's configuration: shared fragments plus the batching and retry knobs of the
// Kafka -> ClickHouse pipeline. Parsed once in main.ts.
import type { loadConfig } from "@stepline/internal/config";
import {
  clickhouseSchema,
  commonSchema,
  envInt,
  grpcAddrSchema,
  kafkaSchema,
} from "@stepline/internal/config";

const MIB = 1024 * 1024;

export const configSchema = {
  ...commonSchema,
  ...kafkaSchema,
  ...clickhouseSchema,
  STEPLINE_ADMIN_PORT: envInt(8305, 0, 65535),
  STEPLINE_HISTORY_GRPC_ADDR: grpcAddrSchema.STEPLINE_HISTORY_GRPC_ADDR,
  /** How long the broker may hold a fetch to gather `BATCH_MIN_BYTES`: the most history waits to batch. */
  STEPLINE_HISTORY_BATCH_WAIT_MS: envInt(500, 0, 60_000),
  /** Bytes a fetch waits for (up to `BATCH_WAIT_MS`), so a busy topic makes few, large inserts. */
  STEPLINE_HISTORY_BATCH_MIN_BYTES: envInt(64 * 1024, 1, 64 * MIB),
  /** Upper bound of one batch (one partition's fetch), hence of one ClickHouse insert. */
  STEPLINE_HISTORY_BATCH_MAX_BYTES: envInt(4 * MIB, 64 * 1024, 256 * MIB),
  /**
   * Group commit: the longest rows wait before they are written. Every partition's batches share
   * one flush, so ClickHouse gets about one insert per table per this period whatever the load.
   */
  STEPLINE_HISTORY_FLUSH_MS: envInt(1_000, 0, 60_000),
  /** Days history keeps runs, steps and events (whole months are dropped past it). */
  STEPLINE_HISTORY_RETENTION_DAYS: envInt(30, 1, 3650),
  /** Longest pause between attempts while ClickHouse refuses inserts (backoff starts at 100 ms). */
  STEPLINE_HISTORY_RETRY_MAX_MS: envInt(10_000, 100, 600_000),
};

/** The parsed configuration. */
export type Config = ReturnType<typeof loadConfig<typeof configSchema>>;
