// Retention: history keeps runs, steps and events for STEPLINE_HISTORY_RETENTION_DAYS. Tables are
// partitioned by month, so whole months are dropped (cheap, no mutation) once their last day is
// older than the retention: a row is kept at least the retention and at most a month longer.
import type { Logger } from "@stepline/internal/log";
import type { ClickHouse } from "./schema.js";
import { dropPartitionsBefore } from "./schema.js";

const DAY_MS = 86_400_000;
/** How often the partitions are checked: retention moves by whole months, an hour is plenty. */
export const RETENTION_CHECK_MS = 3_600_000;

/** The oldest month (YYYYMM, UTC) to keep: the one holding the instant `days` before `nowMs`. */
export function oldestKeptMonth(nowMs: number, days: number): number {
  const d = new Date(nowMs - days * DAY_MS);
  return d.getUTCFullYear() * 100 + d.getUTCMonth() + 1;
}

/**
 * Drops expired months now and every RETENTION_CHECK_MS until stopped. A failure (ClickHouse
 * down) is logged and tried again at the next check. Safe from any number of replicas.
 */
export function startRetention(o: {
  ch: ClickHouse;
  database: string;
  days: number;
  log: Logger;
  now?: () => number;
}): { stop(): void; done: Promise<void> } {
  const now = o.now ?? Date.now;
  const check = async () => {
    try {
      const dropped = await dropPartitionsBefore(o.ch, o.database, oldestKeptMonth(now(), o.days));
      if (dropped.length > 0) o.log.info({ dropped, days: o.days }, "history retention dropped old months");
    } catch (err) {
      o.log.warn({ err }, "history retention check failed; trying again at the next check");
    }
  };
  const done = check();
  const timer = setInterval(() => void check(), RETENTION_CHECK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer), done };
}
