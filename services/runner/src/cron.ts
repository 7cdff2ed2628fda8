// Cron triggers, read with croner. A trigger's cron is a 5- or 6-field expression (seconds first
// when 6) or a nickname (`@daily`), optionally behind `TZ=<zone> ` or `CRON_TZ=<zone> ` (UTC when
// absent), as Inngest accepts them. Each (function, cron) is a chain of durable queue items, one
// per tick, with deterministic ids: `cron:<env>:<fn>:<hash of the cron>:<tick ms>`, so a re-sync
// or a retried tick collapses onto the same item (docs: README "Cron triggers").

import { createHash } from "node:crypto";
import { Cron } from "croner";

/** A parsed cron: its pattern, its zone, and a way to find the tick after a moment. */
export interface CronSchedule {
  source: string;
  pattern: string;
  timezone: string;
  /** The first tick strictly after `afterMs` (epoch ms), or null when none will come. */
  next(afterMs: number): number | null;
}

const TZ_PREFIX = /^(?:CRON_)?TZ=(\S+)\s+(.+)$/;

/** Parses a cron trigger; throws an Error saying what is wrong with it. */
export function parseCron(source: string): CronSchedule {
  const text = source.trim();
  const m = TZ_PREFIX.exec(text);
  const timezone = m?.[1] ?? "UTC";
  const pattern = (m?.[2] ?? text).trim();
  if (pattern.startsWith("@every")) throw new Error(`"${pattern}" is not supported; use a cron expression`);
  const fields = pattern.startsWith("@") ? 0 : pattern.split(/\s+/).length;
  if (!pattern.startsWith("@") && (fields < 5 || fields > 6)) {
    throw new Error(`a cron expression has 5 fields (or 6 with seconds first), got ${fields}`);
  }
  const cron = new Cron(pattern, { paused: true, timezone });
  // A bad zone only shows when a time is computed.
  cron.nextRun(new Date(0));
  return {
    source,
    pattern,
    timezone,
    next(afterMs) {
      const at = cron.nextRun(new Date(afterMs));
      return at ? at.getTime() : null;
    },
  };
}

/** The id of a cron chain's item for one tick. */
export function cronItemId(environmentId: string, functionId: string, cron: string, tickMs: number): string {
  const hash = createHash("sha256").update(cron).digest("hex").slice(0, 12);
  return `cron:${environmentId}:${functionId}:${hash}:${tickMs}`;
}

/** The id of the `inngest/scheduled.timer` event (and so the run) of one tick of a chain. */
export function cronEventId(functionId: string, cron: string, tickMs: number): string {
  const hash = createHash("sha256").update(cron).digest("hex").slice(0, 12);
  return `cron-${functionId}-${hash}-${tickMs}`;
}
