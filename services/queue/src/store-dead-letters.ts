// Dead letters: items claim gave up on after too many deliveries that ended in a lost lease
// (claim.lua). They stay in the item hash (state d) and in the shard's dlq set until an operator
// redrives them (redrive.lua); a run's dead item has already failed its run through its notice.
import { parseRecord } from "./item-record.js";
import type { ShardKeys } from "./keys.js";
import type { Scripts } from "./scripts.js";
import { type MutationResult, mutation } from "./store.js";

export interface DeadLetterView {
  itemId: string;
  runId: string;
  accountId: string;
  environmentId: string;
  functionId: string;
  kind: number;
  attempt: number;
  deliveries: number;
  deadLetteredAtMs: number;
}

/** How many dlq entries one read takes while looking for an account's items. */
const SCAN_CHUNK = 500;

/**
 * The first `limit` dead letters of one shard (oldest first), of `accountId` when it is not "",
 * and whether more match. Entries whose record is gone (a leftover) are skipped.
 */
export async function shardDeadLetters(
  s: Scripts,
  keys: ShardKeys,
  accountId: string,
  limit: number,
): Promise<{ items: DeadLetterView[]; more: boolean }> {
  const items: DeadLetterView[] = [];
  // Without an account every entry matches: the first limit + 1 say all there is to say.
  const chunk = accountId === "" ? limit + 1 : SCAN_CHUNK;
  for (let offset = 0; ; offset += chunk) {
    const flat = await s.redis.zrange(keys.dlq, String(offset), String(offset + chunk - 1), "WITHSCORES");
    if (flat.length === 0) return { items, more: false };
    const ids = flat.filter((_, i) => i % 2 === 0);
    const records = await s.redis.hmget(keys.items, ...ids);
    for (let i = 0; i < ids.length; i++) {
      const raw = records[i];
      if (!raw) continue;
      const r = parseRecord(raw);
      if (r.state !== "d" || (accountId !== "" && r.body.acct !== accountId)) continue;
      if (items.length === limit) return { items, more: true };
      items.push({
        itemId: ids[i] as string,
        runId: r.body.run,
        accountId: r.body.acct,
        environmentId: r.body.env,
        functionId: r.body.fn,
        kind: r.body.kind,
        attempt: r.attempt,
        deliveries: r.deliveries,
        deadLetteredAtMs: Number(flat[i * 2 + 1]),
      });
    }
    if (flat.length < chunk * 2) return { items, more: false };
  }
}

/** Puts dead letters back in line (redrive.lua); per item REDRIVEN (1), NOT_DEAD (0) or WRONG_PARTITION (-2). */
export async function redriveItems(
  s: Scripts,
  keys: ShardKeys,
  items: Array<{ itemId: string; accountId: string; pid: string }>,
): Promise<MutationResult> {
  const k = [keys.items, keys.dlq, keys.seq, keys.accounts, keys.forced];
  const a: Array<string | number> = [s.now(), items.length];
  for (const i of items) {
    k.push(keys.partition(i.accountId, i.pid), keys.account(i.accountId));
    a.push(i.itemId, i.accountId, i.pid);
  }
  return mutation(keys.shard, await s.run("redrive", k, a), "redrive");
}
