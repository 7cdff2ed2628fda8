// Run ids for (event, function) pairs: the first runner to see a pair stores a new ULID for 24 h
// and every later sighting (a Kafka redelivery, the same event id sent again, another replica)
// reads the same id back, so the executor, idempotent per run id, creates the run once.

import { newId } from "@stepline/internal/ids";
import type { Redis } from "ioredis";
import { idemKey } from "./keys.js";

/** How long a pair keeps its run id: the window in which an event id is not processed twice. */
export const IDEMPOTENCY_TTL_S = 24 * 60 * 60;

/** One (event, function) pair of an environment. */
export interface RunKey {
  environmentId: string;
  functionId: string;
  eventId: string;
}

/** The run id of each pair, in order: a new ULID the first time, the stored one after. One round trip. */
export async function claimRunIds(redis: Redis, pairs: RunKey[]): Promise<string[]> {
  if (pairs.length === 0) return [];
  const proposed = pairs.map(() => newId());
  const pipeline = redis.pipeline();
  pairs.forEach((p, i) => {
    // SET NX GET (Redis >= 7.0) answers the value already stored, or nil when ours was written.
    pipeline.set(
      idemKey(p.environmentId, p.functionId, p.eventId),
      proposed[i] as string,
      "EX",
      IDEMPOTENCY_TTL_S,
      "NX",
      "GET",
    );
  });
  const results = (await pipeline.exec()) ?? [];
  return pairs.map((_, i) => {
    const [err, existing] = results[i] ?? [new Error("missing pipeline reply"), null];
    if (err) throw err;
    return typeof existing === "string" ? existing : (proposed[i] as string);
  });
}
