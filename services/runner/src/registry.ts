// The function registry in Redis: what each environment's apps synced. SyncApp replaces one
// app's set atomically with one script, which also increments the environment's version; readers
// load a whole environment with one HGETALL, and keep it while its version does not change; the
// consumer checks that version before it writes (batch-indexes.ts) instead of reading and parsing
// every function each time.

import { readFileSync } from "node:fs";
import { ValidationError } from "@stepline/internal/errors";
import { scriptErrorOf } from "@stepline/internal/script-errors";
import type { Redis, Result } from "ioredis";
import { appsKey, fnsKey, ownersKey, syncsKey, versionKey } from "./keys.js";
import type { AppSync, StoredFunction } from "./model.js";

declare module "ioredis" {
  interface RedisCommander<Context> {
    runnerSyncApp(
      fns: string,
      owners: string,
      apps: string,
      version: string,
      ...args: string[]
    ): Result<[number], Context>;
  }
}

const SYNC_APP_LUA = readFileSync(new URL("../lua/sync-app.lua", import.meta.url), "utf8");

/** A sync's outcome, as the app list shows it. */
export interface SyncOutcome {
  atMs: number;
  url: string;
  error: string;
}

/** An app as the app list shows it. */
export interface AppSummary {
  appId: string;
  url: string;
  sdk: string;
  framework: string;
  functions: number;
  lastSyncAtMs: number;
  lastSyncError: string;
}

/** Reads and writes the `r:` registry keys. */
export class Registry {
  /** Each environment's functions as last read, with the version they were read at. */
  private readonly cache = new Map<string, { version: string; fns: StoredFunction[] }>();

  constructor(private readonly redis: Redis) {
    redis.defineCommand("runnerSyncApp", { numberOfKeys: 4, lua: SYNC_APP_LUA });
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
    let res: number[];
    try {
      res = await this.redis.runnerSyncApp(
        fnsKey(env),
        ownersKey(env),
        appsKey(env),
        versionKey(env),
        ...args,
      );
    } catch (err) {
      const refused = scriptErrorOf(err);
      if (refused?.code !== "CONFLICT") throw err;
      const [fnId, owner] = refused.detail.split(" ");
      throw new ValidationError(
        `function ${fnId}: id already belongs to app ${owner} in this environment; rename it or remove it from that app first`,
      );
    }
    return { modified: res[0] === 1 };
  }

  /**
   * Notes a sync's outcome for the app list: when, from which URL, and why it was refused ("" when
   * it was taken). Kept apart from the app's entry, which syncs compare byte for byte.
   */
  async recordSync(environmentId: string, appId: string, outcome: SyncOutcome): Promise<void> {
    await this.redis.hset(syncsKey(environmentId), appId, JSON.stringify(outcome));
  }

  /** The environment's apps, sorted by id: synced ones, and ones whose only syncs were refused. */
  async listApps(environmentId: string): Promise<AppSummary[]> {
    // Maps, not the objects HGETALL answers: an app id such as "constructor" would find
    // Object.prototype's member in the hash it is not in.
    const [apps, syncs, owners] = await Promise.all([
      this.redis.hgetall(appsKey(environmentId)).then((h) => new Map(Object.entries(h))),
      this.redis.hgetall(syncsKey(environmentId)).then((h) => new Map(Object.entries(h))),
      this.redis.hvals(ownersKey(environmentId)),
    ]);
    const functions = new Map<string, number>();
    for (const appId of owners) functions.set(appId, (functions.get(appId) ?? 0) + 1);
    const ids = [...new Set([...apps.keys(), ...syncs.keys()])].sort();
    return ids.map((appId) => {
      const stored = apps.get(appId);
      const app = stored ? (JSON.parse(stored) as { url: string; sdk: string; framework: string }) : null;
      const synced = syncs.get(appId);
      const sync = synced ? (JSON.parse(synced) as SyncOutcome) : null;
      return {
        appId,
        url: app?.url ?? sync?.url ?? "",
        sdk: app?.sdk ?? "",
        framework: app?.framework ?? "",
        functions: functions.get(appId) ?? 0,
        lastSyncAtMs: sync?.atMs ?? 0,
        lastSyncError: sync?.error ?? "",
      };
    });
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

  /**
   * An environment's functions as last loaded, with the version they were read at, without
   * reading Redis: they may be stale (batch-indexes.ts checks the version with its next write).
   */
  cached(environmentId: string): { version: string; fns: StoredFunction[] } | undefined {
    return this.cache.get(environmentId);
  }

  /**
   * The functions of several environments: one GET of each version, then one HGETALL for each
   * environment whose version changed since it was cached (the same array object otherwise, so
   * callers may cache what they derive from it).
   */
  async loadMany(environmentIds: Iterable<string>): Promise<Map<string, StoredFunction[]>> {
    const ids = [...new Set(environmentIds)];
    const out = new Map<string, StoredFunction[]>();
    if (ids.length === 0) return out;
    const versions = await this.redis.mget(ids.map(versionKey));
    const stale: Array<{ id: string; version: string | null }> = [];
    ids.forEach((id, i) => {
      const version = versions[i] ?? null;
      const hit = this.cache.get(id);
      if (version !== null && hit?.version === version) out.set(id, hit.fns);
      else stale.push({ id, version });
    });
    if (stale.length === 0) return out;
    const pipeline = this.redis.pipeline();
    for (const s of stale) pipeline.hgetall(fnsKey(s.id));
    const results = (await pipeline.exec()) ?? [];
    stale.forEach((s, i) => {
      const [err, value] = results[i] ?? [new Error("missing pipeline reply"), null];
      if (err) throw err;
      const fns = parseEntries(value as Record<string, string>);
      out.set(s.id, fns);
      // Read after the version: a sync in between leaves a newer version, so the next read reloads.
      if (s.version !== null) {
        if (this.cache.size >= MAX_CACHED_ENVIRONMENTS) this.cache.clear();
        this.cache.set(s.id, { version: s.version, fns });
      }
    });
    return out;
  }
}

/** Environments whose functions one runner keeps parsed (dropped wholesale past it). */
const MAX_CACHED_ENVIRONMENTS = 10_000;

function parseEntries(hash: Record<string, string>): StoredFunction[] {
  return Object.keys(hash)
    .sort()
    .map((id) => JSON.parse(hash[id] as string) as StoredFunction);
}
