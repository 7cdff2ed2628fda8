// The function registry in Redis: what each environment's apps synced. SyncApp replaces one
// app's set atomically with one script; readers load a whole environment with one HGETALL.

import { readFileSync } from "node:fs";
import { ValidationError } from "@stepline/internal/errors";
import type { Redis, Result } from "ioredis";
import { appsKey, fnsKey, ownersKey } from "./keys.js";
import type { AppSync, StoredFunction } from "./model.js";

declare module "ioredis" {
  interface RedisCommander<Context> {
    runnerSyncApp(
      fns: string,
      owners: string,
      apps: string,
      ...args: string[]
    ): Result<[number] | [number, string, string], Context>;
  }
}

const SYNC_APP_LUA = readFileSync(new URL("../lua/sync-app.lua", import.meta.url), "utf8");

/** Reads and writes the `r:` registry keys. */
export class Registry {
  constructor(private readonly redis: Redis) {
    redis.defineCommand("runnerSyncApp", { numberOfKeys: 3, lua: SYNC_APP_LUA });
  }

  /**
   * Replaces the app's functions in its environment with `sync.functions` (validated input).
   * Returns modified=false when the registry already held exactly this. Throws ValidationError
   * when a function id belongs to another app of the environment (nothing is written then).
   */
  async syncApp(sync: AppSync): Promise<{ modified: boolean }> {
    const env = sync.environmentId;
    const app = JSON.stringify({
      accountId: sync.accountId,
      url: sync.url,
      sdk: sync.sdk,
      framework: sync.framework,
    });
    const args: string[] = [sync.appId, app];
    for (const fn of sync.functions) {
      const entry: StoredFunction = { accountId: sync.accountId, appId: sync.appId, fn };
      args.push(fn.id, JSON.stringify(entry));
    }
    const res = await this.redis.runnerSyncApp(fnsKey(env), ownersKey(env), appsKey(env), ...args);
    if (res[0] === -1) {
      throw new ValidationError(
        `function ${res[1]}: id already belongs to app ${res[2]} in this environment; rename it or remove it from that app first`,
      );
    }
    return { modified: res[0] === 1 };
  }

  /** The environment's functions, sorted by function id. */
  async list(environmentId: string): Promise<StoredFunction[]> {
    return parseEntries(await this.redis.hgetall(fnsKey(environmentId)));
  }

  /**
   * Single functions by (account, environment, function id), in order, in one round trip; null
   * for one that is not synced there or belongs to another account.
   */
  async getMany(
    refs: Array<{ accountId: string; environmentId: string; functionId: string }>,
  ): Promise<Array<StoredFunction | null>> {
    if (refs.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const r of refs) pipeline.hget(fnsKey(r.environmentId), r.functionId);
    const results = (await pipeline.exec()) ?? [];
    return refs.map((r, i) => {
      const [err, value] = results[i] ?? [new Error("missing pipeline reply"), null];
      if (err) throw err;
      if (typeof value !== "string") return null;
      const entry = JSON.parse(value) as StoredFunction;
      return entry.accountId === r.accountId ? entry : null;
    });
  }

  /** The functions of several environments in one round trip (one HGETALL each). */
  async loadMany(environmentIds: Iterable<string>): Promise<Map<string, StoredFunction[]>> {
    const ids = [...new Set(environmentIds)];
    const out = new Map<string, StoredFunction[]>();
    if (ids.length === 0) return out;
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(fnsKey(id));
    const results = (await pipeline.exec()) ?? [];
    ids.forEach((id, i) => {
      const [err, value] = results[i] ?? [new Error("missing pipeline reply"), null];
      if (err) throw err;
      out.set(id, parseEntries(value as Record<string, string>));
    });
    return out;
  }
}

function parseEntries(hash: Record<string, string>): StoredFunction[] {
  return Object.keys(hash)
    .sort()
    .map((id) => JSON.parse(hash[id] as string) as StoredFunction);
}
