// Routing of accounts to the queue's virtual shards. Every service that builds queue or state
// keys for an account uses this one module, so they always agree.
import { createHash } from "node:crypto";

/** The fixed number of virtual shards (changing it needs a migration). */
export const VIRTUAL_SHARDS = 256;

/**
 * Jump consistent hash (Lamping & Veach) of a 64-bit key into `buckets` buckets: moving from n to
 * n+1 buckets relocates only 1/(n+1) of the keys.
 */
export function jumpHash(key: bigint, buckets: number): number {
  let k = BigInt.asUintN(64, key);
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = BigInt.asUintN(64, k * 2862933555777941757n + 1n);
    j = Math.floor(((b + 1) * 2 ** 31) / Number((k >> 33n) + 1n));
  }
  return b;
}

/** The virtual shard of an account. */
export function shardOf(accountId: string, shards = VIRTUAL_SHARDS): number {
  const digest = createHash("sha256").update(accountId).digest();
  return jumpHash(digest.readBigUInt64BE(0), shards);
}
