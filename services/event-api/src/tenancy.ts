// The tenancy store: accounts, environments, event keys and signing keys, durably in Redis under
// the `t:` prefix, plus the lookups that authenticate requests (event key -> environment, hashed
// signing key -> environment). Every key shares the hash tag `{t}`, so the MULTI transactions
// below stay in one Redis Cluster slot; tenancy is small control-plane data, and the hot path
// (event-key lookups) is cached in-process.
import type { Clock } from "@stepline/internal/clock";
import { systemClock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError, ValidationError } from "@stepline/internal/errors";
import { isUlid, newId } from "@stepline/internal/ids";
import { isPrintable } from "@stepline/internal/sync-rules";
import type { Redis, Result } from "ioredis";
import { eventKeyDigest, hashSigningKey, isSigningKeyShaped, newEventKey, newSigningKey } from "./keys.js";

export interface Account {
  id: string;
  name: string;
  createdAtMs: number;
}

export interface Environment {
  id: string;
  accountId: string;
  name: string;
  /** Oldest first. */
  eventKeys: string[];
  /** The full signing key `signkey-<slug>-<hex>`. */
  signingKey: string;
  createdAtMs: number;
}

/** Which tenant a request belongs to. */
export interface EnvRef {
  accountId: string;
  environmentId: string;
}

/** Fixed ids of dev mode's default tenant (valid ULIDs, so every service accepts them). */
export const DEV_ACCOUNT_ID = "00000000000000000000DEVACC";
export const DEV_ENVIRONMENT_ID = "00000000000000000000DEVENV";
export const DEV_ACCOUNT_NAME = "default";
export const DEV_ENVIRONMENT_NAME = "dev";

export const DEFAULT_PREFIX = "t:{t}:";

const MAX_ACCOUNT_NAME = 100;
const MAX_ENV_NAME = 64;
const ENV_NAME = /^[A-Za-z0-9][A-Za-z0-9 _.-]*$/;

export interface TenancyOptions {
  /** Key prefix; must contain the hash tag. Tests pass their own to isolate themselves. */
  prefix?: string;
  clock?: Clock;
  /** How long a resolved key stays cached in-process (keys are never revoked yet). */
  cacheTtlMs?: number;
  /** How long an unknown key stays cached, so floods of bad keys do not all reach Redis. */
  negativeCacheTtlMs?: number;
}

interface CacheEntry {
  ref: EnvRef | null;
  expiresAt: number;
}

const CACHE_MAX = 10_000;

/**
 * Creates an environment and claims its name in one atomic step, so two creates of one name at
 * once yield one environment. A name held by an id whose environment does not exist (left by a
 * create that crashed before this was one script) is taken over. Returns 1, or 0 when the name
 * is taken. The holder's key is built from ARGV[3] (the env key prefix, same hash tag as KEYS).
 * KEYS: account's name hash, env hash, account's env zset, env's event-key list, event-key index,
 * signing-key index. ARGV: name field, env id, env key prefix, account id, name, signing key,
 * created ms, event key, event-key digest, signing-key hash.
 */
const CREATE_ENVIRONMENT_LUA = `
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and redis.call('EXISTS', ARGV[3] .. holder) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'accountId', ARGV[4], 'name', ARGV[5], 'signingKey', ARGV[6],
  'createdAtMs', ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[2])
redis.call('RPUSH', KEYS[4], ARGV[8])
redis.call('HSET', KEYS[5], ARGV[9], ARGV[2])
redis.call('HSET', KEYS[6], ARGV[10], ARGV[2])
return 1
`;

declare module "ioredis" {
  interface RedisCommander<Context> {
    steplineCreateEnvironment(...args: string[]): Result<number, Context>;
  }
}

/** The Redis-backed tenancy store. */
export class TenancyStore {
  private readonly p: string;
  private readonly clock: Clock;
  private readonly ttl: number;
  private readonly negativeTtl: number;
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly redis: Redis,
    opts: TenancyOptions = {},
  ) {
    // Defined once per client (several stores may share one).
    if (typeof redis.steplineCreateEnvironment !== "function")
      redis.defineCommand("steplineCreateEnvironment", { numberOfKeys: 6, lua: CREATE_ENVIRONMENT_LUA });
    this.p = opts.prefix ?? DEFAULT_PREFIX;
    this.clock = opts.clock ?? systemClock;
    this.ttl = opts.cacheTtlMs ?? 60_000;
    this.negativeTtl = opts.negativeCacheTtlMs ?? 2_000;
  }

  private k = {
    accounts: () => `${this.p}accounts`,
    account: (id: string) => `${this.p}acct:${id}`,
    accountEnvs: (id: string) => `${this.p}acct:${id}:envs`,
    accountEnvNames: (id: string) => `${this.p}acct:${id}:envnames`,
    env: (id: string) => `${this.p}env:${id}`,
    envEventKeys: (id: string) => `${this.p}env:${id}:eventkeys`,
    eventKeyIndex: () => `${this.p}idx:eventkey`,
    signingKeyIndex: () => `${this.p}idx:signkey`,
  };

  /** Creates an account (a new one on every call; names need not be unique). */
  async createAccount(name: string): Promise<Account> {
    const clean = validateAccountName(name);
    const account: Account = { id: newId(), name: clean, createdAtMs: this.clock.now() };
    await this.redis
      .multi()
      .hset(this.k.account(account.id), toHash(account))
      .zadd(this.k.accounts(), String(account.createdAtMs), account.id)
      .exec()
      .then(checkExec);
    return account;
  }

  /** Every account, oldest first. */
  async listAccounts(): Promise<Account[]> {
    const ids = await this.redis.zrange(this.k.accounts(), "0", "-1");
    const rows = await Promise.all(ids.map((id) => this.redis.hgetall(this.k.account(id))));
    return rows.filter((r) => r.id).map(parseAccount);
  }

  /** One account; NotFoundError when it does not exist. */
  async getAccount(id: string): Promise<Account> {
    requireId("account_id", id);
    const row = await this.redis.hgetall(this.k.account(id));
    if (!row.id) throw new NotFoundError(`account ${id} not found`);
    return parseAccount(row);
  }

  /** Creates an environment with one event key and one signing key. Names are unique per account. */
  async createEnvironment(accountId: string, name: string): Promise<Environment> {
    const clean = validateEnvName(name);
    await this.getAccount(accountId);
    const env: Environment = {
      id: newId(),
      accountId,
      name: clean,
      eventKeys: [newEventKey()],
      signingKey: newSigningKey(clean),
      createdAtMs: this.clock.now(),
    };
    const key = env.eventKeys[0] ?? "";
    const created = await this.redis.steplineCreateEnvironment(
      this.k.accountEnvNames(accountId),
      this.k.env(env.id),
      this.k.accountEnvs(accountId),
      this.k.envEventKeys(env.id),
      this.k.eventKeyIndex(),
      this.k.signingKeyIndex(),
      clean.toLowerCase(),
      env.id,
      this.k.env(""),
      accountId,
      clean,
      env.signingKey,
      String(env.createdAtMs),
      key,
      eventKeyDigest(key),
      hashSigningKey(env.signingKey) ?? "",
    );
    if (created !== 1)
      throw new ConflictError(`environment "${name}" already exists in account ${accountId}`);
    return env;
  }

  /** An account's environments with their keys, oldest first. */
  async listEnvironments(accountId: string): Promise<Environment[]> {
    await this.getAccount(accountId);
    const ids = await this.redis.zrange(this.k.accountEnvs(accountId), "0", "-1");
    const envs = await Promise.all(ids.map((id) => this.findEnvironment(id)));
    return envs.filter((e): e is Environment => e !== null);
  }

  /** One environment with its keys; NotFoundError when it does not exist. */
  async getEnvironment(id: string): Promise<Environment> {
    requireId("environment_id", id);
    const env = await this.findEnvironment(id);
    if (!env) throw new NotFoundError(`environment ${id} not found`);
    return env;
  }

  private async findEnvironment(id: string): Promise<Environment | null> {
    const [row, keys] = await Promise.all([
      this.redis.hgetall(this.k.env(id)),
      this.redis.lrange(this.k.envEventKeys(id), 0, -1),
    ]);
    if (!row.id) return null;
    return {
      id: row.id,
      accountId: row.accountId ?? "",
      name: row.name ?? "",
      eventKeys: keys,
      signingKey: row.signingKey ?? "",
      createdAtMs: Number(row.createdAtMs ?? 0),
    };
  }

  /** Adds an event key to an environment and returns it. */
  async createEventKey(envId: string): Promise<string> {
    await this.getEnvironment(envId);
    const key = newEventKey();
    await this.redis
      .multi()
      // A list, not a sorted set: keys made in the same millisecond keep their order.
      .rpush(this.k.envEventKeys(envId), key)
      .hset(this.k.eventKeyIndex(), eventKeyDigest(key), envId)
      .exec()
      .then(checkExec);
    return key;
  }

  /** The tenant an event key belongs to, or null for an unknown key. Cached in-process. */
  async resolveEventKey(key: string): Promise<EnvRef | null> {
    if (!key || key.length > 256) return null;
    const digest = eventKeyDigest(key);
    return this.cached(`e:${digest}`, async () => {
      const envId = await this.redis.hget(this.k.eventKeyIndex(), digest);
      return envId ? this.envRef(envId) : null;
    });
  }

  /**
   * The tenant a signing key belongs to, given either the key itself or its hashed form (what the
   * SDK sends as a bearer token), or null when it is unknown.
   */
  async resolveSigningKey(token: string): Promise<EnvRef | null> {
    if (!isSigningKeyShaped(token) || token.length > 256) return null;
    const digest = eventKeyDigest(token);
    return this.cached(`s:${digest}`, async () => {
      const index = this.k.signingKeyIndex();
      const hashed = hashSigningKey(token) ?? "";
      const [asHashed, asRaw] = await Promise.all([
        this.redis.hget(index, token),
        this.redis.hget(index, hashed),
      ]);
      const envId = asHashed ?? asRaw;
      return envId ? this.envRef(envId) : null;
    });
  }

  private async envRef(envId: string): Promise<EnvRef | null> {
    const accountId = await this.redis.hget(this.k.env(envId), "accountId");
    return accountId ? { accountId, environmentId: envId } : null;
  }

  private async cached(key: string, load: () => Promise<EnvRef | null>): Promise<EnvRef | null> {
    const now = this.clock.now();
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > now) return hit.ref;
    const ref = await load();
    if (this.cache.size >= CACHE_MAX) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(key, { ref, expiresAt: now + (ref ? this.ttl : this.negativeTtl) });
    return ref;
  }

  /**
   * Creates dev mode's default account and environment (fixed ids) if they are missing. Safe to
   * run concurrently from several replicas: every write is set-if-absent, and only the signing key
   * that won is indexed.
   */
  async ensureDevTenant(): Promise<Environment> {
    const existing = await this.findEnvironment(DEV_ENVIRONMENT_ID);
    if (existing && existing.eventKeys.length > 0) return existing;
    const now = String(this.clock.now());
    const acct = this.k.account(DEV_ACCOUNT_ID);
    const env = this.k.env(DEV_ENVIRONMENT_ID);
    await this.redis
      .multi()
      .hsetnx(acct, "id", DEV_ACCOUNT_ID)
      .hsetnx(acct, "name", DEV_ACCOUNT_NAME)
      .hsetnx(acct, "createdAtMs", now)
      .zadd(this.k.accounts(), "NX", now, DEV_ACCOUNT_ID)
      .hsetnx(this.k.accountEnvNames(DEV_ACCOUNT_ID), DEV_ENVIRONMENT_NAME, DEV_ENVIRONMENT_ID)
      .zadd(this.k.accountEnvs(DEV_ACCOUNT_ID), "NX", now, DEV_ENVIRONMENT_ID)
      .hsetnx(env, "accountId", DEV_ACCOUNT_ID)
      .hsetnx(env, "name", DEV_ENVIRONMENT_NAME)
      .hsetnx(env, "signingKey", newSigningKey(DEV_ENVIRONMENT_NAME))
      .hsetnx(env, "createdAtMs", now)
      .hsetnx(env, "id", DEV_ENVIRONMENT_ID)
      .exec()
      .then(checkExec);
    const signingKey = (await this.redis.hget(env, "signingKey")) ?? "";
    await this.redis.hset(this.k.signingKeyIndex(), hashSigningKey(signingKey) ?? "", DEV_ENVIRONMENT_ID);
    if ((await this.redis.llen(this.k.envEventKeys(DEV_ENVIRONMENT_ID))) === 0) {
      await this.createEventKey(DEV_ENVIRONMENT_ID);
    }
    return this.getEnvironment(DEV_ENVIRONMENT_ID);
  }
}

function toHash(a: Account): Record<string, string> {
  return { id: a.id, name: a.name, createdAtMs: String(a.createdAtMs) };
}

function parseAccount(row: Record<string, string>): Account {
  return { id: row.id ?? "", name: row.name ?? "", createdAtMs: Number(row.createdAtMs ?? 0) };
}

/** A MULTI that failed part-way reports per-command errors; surface the first. */
function checkExec(results: Array<[Error | null, unknown]> | null): void {
  if (!results) throw new Error("redis transaction aborted");
  for (const [err] of results) if (err) throw err;
}

function requireId(field: string, id: string): void {
  if (!id) throw new ValidationError(`${field} is required`);
  if (!isUlid(id)) throw new ValidationError(`${field} must be a ULID (26 characters, 0-9 and A-Z)`);
}

/** Trims and checks an account name: 1 to 100 printable characters. */
export function validateAccountName(name: string): string {
  const clean = name.trim();
  if (!clean) throw new ValidationError("name is required");
  if (clean.length > MAX_ACCOUNT_NAME) {
    throw new ValidationError(`name is too long (${clean.length} characters; at most ${MAX_ACCOUNT_NAME})`);
  }
  if (!isPrintable(clean)) throw new ValidationError("name must not contain control characters");
  return clean;
}

/** Trims and checks an environment name: 1 to 64 of letters, digits, space, `_`, `.`, `-`. */
export function validateEnvName(name: string): string {
  const clean = name.trim();
  if (!clean) throw new ValidationError("name is required");
  if (clean.length > MAX_ENV_NAME) {
    throw new ValidationError(`name is too long (${clean.length} characters; at most ${MAX_ENV_NAME})`);
  }
  if (!ENV_NAME.test(clean)) {
    throw new ValidationError(
      "name must start with a letter or digit and contain only letters, digits, spaces, '_', '.' and '-'",
    );
  }
  return clean;
}
