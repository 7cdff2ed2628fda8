// Splitting a batch of queue operations into script calls: grouped by shard (a script touches one
// shard), in chunks bounded in operations and in the items they add, all in flight at once.

/**
 * Groups `values` by shard, then runs `fn` on chunks of at most `chunk` values (and, with
 * `itemsOf`, at most `itemsPerCall` items they add, unless one value alone adds more), all in
 * flight at once. Calls on one connection run in the order sent, so chunks of one shard keep
 * their order.
 */
export async function perShard<T>(
  values: T[],
  shardOf: (v: T) => number,
  limits: { chunk: number; itemsPerCall: number },
  fn: (shard: number, batch: Array<{ index: number; value: T }>) => Promise<void>,
  itemsOf?: (v: T) => number,
): Promise<void> {
  const groups = new Map<number, Array<{ index: number; value: T }>>();
  values.forEach((value, index) => {
    const shard = shardOf(value);
    const g = groups.get(shard);
    if (g) g.push({ index, value });
    else groups.set(shard, [{ index, value }]);
  });
  const calls: Array<Promise<void>> = [];
  for (const [shard, g] of groups) {
    let batch: Array<{ index: number; value: T }> = [];
    let items = 0;
    for (const v of g) {
      const n = itemsOf?.(v.value) ?? 0;
      if (batch.length > 0 && (batch.length >= limits.chunk || items + n > limits.itemsPerCall)) {
        calls.push(fn(shard, batch));
        batch = [];
        items = 0;
      }
      batch.push(v);
      items += n;
    }
    if (batch.length > 0) calls.push(fn(shard, batch));
  }
  await Promise.all(calls);
}
