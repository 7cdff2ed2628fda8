// Many Redis commands in one round trip where Redis allows it: the queue's rounds over every shard
// (owner renewals, the sweep's reads) would otherwise cost a socket write and a Redis wake-up per
// command.
import type { ChainableCommander, Redis } from "ioredis";

/** One command: queued on `target` when it is a pipeline, sent when it is the client. */
export type Command = (target: Redis | ChainableCommander) => unknown;

/**
 * Runs `commands` and resolves with their replies in order; rejects with the first failure, as
 * `onError` maps it (given the command's index). On one Redis server they go as one pipeline. On
 * Redis Cluster a pipeline must stay within one slot, so there each command goes on its own.
 */
export async function inOneTrip(
  redis: Redis,
  commands: readonly Command[],
  onError: (index: number, err: unknown) => unknown = (_, err) => err,
): Promise<unknown[]> {
  if (redis.isCluster || commands.length < 2) {
    return Promise.all(
      commands.map(async (command, i) => {
        try {
          return await command(redis);
        } catch (err) {
          throw onError(i, err);
        }
      }),
    );
  }
  const pipeline = redis.pipeline();
  for (const command of commands) command(pipeline);
  const replies = (await pipeline.exec()) ?? [];
  return commands.map((_, i) => {
    const [err, reply] = replies[i] ?? [new Error("no reply in its pipeline")];
    if (err) throw onError(i, err);
    return reply;
  });
}
