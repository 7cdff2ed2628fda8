// Fair selection inside one shard, kept in the owner's memory (no hot Redis hash): deficit round
// robin across the shard's ready accounts, then a rotating, evenly capped split across one
// account's ready partitions. Fairness is soft state: losing it on fail-over only restarts the
// rotation; lease safety never depends on it.

/** What one round asks of one account. */
export interface AccountShare {
  accountId: string;
  count: number;
}

/**
 * Deficit round robin over accounts. Every round each ready account earns `quantum` (capped at
 * `maxDeficit`); accounts are served in decreasing deficit and pay for what they get; an account
 * that could not fill its request is idle and banks nothing. So an account with 10,000 items gets
 * no more turns than one with a single item. Weights per plan would scale the quantum here.
 */
export class AccountDrr {
  private readonly deficits = new Map<string, number>();
  private turn = 0;

  constructor(
    private readonly quantum: number,
    private readonly maxDeficit = 2 * quantum,
  ) {}

  /** Plans one round: the items to ask of each ready account, `perCall` at most each, `budget` in all. */
  plan(ready: readonly string[], budget: number, perCall: number): AccountShare[] {
    const readySet = new Set(ready);
    for (const a of this.deficits.keys()) if (!readySet.has(a)) this.deficits.delete(a);
    for (const a of ready) {
      this.deficits.set(a, Math.min(this.maxDeficit, (this.deficits.get(a) ?? 0) + this.quantum));
    }
    const n = ready.length;
    const start = n === 0 ? 0 : this.turn++ % n;
    // Ties go to a rotating start, so equal accounts take turns at going first.
    const order = ready
      .map((accountId, i) => ({
        accountId,
        deficit: this.deficits.get(accountId) ?? 0,
        rank: (i - start + n) % n,
      }))
      .sort((x, y) => y.deficit - x.deficit || x.rank - y.rank);
    const shares: AccountShare[] = [];
    let left = budget;
    for (const { accountId, deficit } of order) {
      if (left <= 0) break;
      const count = Math.min(Math.floor(deficit), perCall, left);
      if (count <= 0) continue;
      shares.push({ accountId, count });
      left -= count;
    }
    return shares;
  }

  /** Charges an account for a claim: `got` items of the `asked`. */
  charge(accountId: string, asked: number, got: number): void {
    const d = this.deficits.get(accountId);
    if (d === undefined) return;
    this.deficits.set(accountId, got < asked ? 0 : Math.max(0, d - got));
  }

  /** The current deficit of an account (tests, metrics). */
  deficit(accountId: string): number {
    return this.deficits.get(accountId) ?? 0;
  }
}

/**
 * Splits `max` items over an account's ready partitions for one claim: the list is rotated by
 * `turn` so partitions take turns at going first, and each gets an even cap in the claim's first
 * pass (the script's second pass fills what the caps leave unused).
 */
export function partitionShares<P extends { pid: string }>(
  parts: readonly P[],
  max: number,
  turn: number,
): Array<P & { cap: number }> {
  const n = parts.length;
  if (n === 0) return [];
  const cap = Math.max(1, Math.ceil(max / n));
  const start = turn % n;
  return Array.from({ length: n }, (_, i) => ({ ...(parts[(start + i) % n] as P), cap }));
}
