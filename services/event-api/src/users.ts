// Dashboard users, their sign-in sessions and the limit on failed sign-ins, in Redis beside
// tenancy (same prefix and `{t}` hash tag, so each Lua script below stays in one Cluster slot).
// Passwords are stored only as argon2id hashes; sessions only under a SHA-256 of their token, so a
// copy of Redis holds nothing a browser could present.
import { createHash, randomBytes } from "node:crypto";
import type { Algorithm } from "@node-rs/argon2";
import { hash, verify } from "@node-rs/argon2";
import type { Clock } from "@stepline/internal/clock";
import { systemClock } from "@stepline/internal/clock";
import { ConflictError, NotFoundError, ValidationError } from "@stepline/internal/errors";
import { isUlid } from "@stepline/internal/ids";
import type { Redis, Result } from "ioredis";
import { DEFAULT_PREFIX } from "./tenancy.js";
import { checkPassword, MAX_PASSWORD_LENGTH, USERNAME, validateUsername } from "./user-rules.js";

export interface User {
  username: string;
  accountId: string;
  createdAtMs: number;
}

/** A live session, as a request sees it. */
export interface Session {
  username: string;
  accountId: string;
  csrfToken: string;
  createdAtMs: number;
  /** The absolute end; idle sessions end sooner (Redis expiry). */
  expiresAtMs: number;
}

export type SignInResult =
  | { kind: "ok"; token: string; session: Session }
  | { kind: "wrong" }
  | { kind: "limited"; retryAfterMs: number };

/** 32 random bytes, base64url: what `newToken` makes; anything else is not looked up. */
const TOKEN = /^[A-Za-z0-9_-]{43}$/;
/** Algorithm.Argon2id: an ambient const enum, which isolated modules cannot read by name. */
const ARGON2ID = 2 as Algorithm;

export interface UserStoreOptions {
  /** Key prefix; must contain the hash tag (tenancy's by default, so account keys are found). */
  prefix?: string;
  clock?: Clock;
  /** A session unused this long ends (each use pushes it back). */
  idleMs?: number;
  /** A session ends this long after sign-in, however busy. */
  absoluteMs?: number;
  /** Failed sign-ins allowed per username and per client address within `failureWindowMs`. */
  maxFailures?: number;
  failureWindowMs?: number;
}

/**
 * Creates a user unless the username is taken, and only in an existing account.
 * KEYS: user hash, users zset, account hash. ARGV: username key, username, account id, password
 * hash, created ms. Returns 1, 0 (taken) or -1 (no such account).
 */
const CREATE_USER_LUA = `
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'username', ARGV[2], 'accountId', ARGV[3], 'passwordHash', ARGV[4], 'createdAtMs', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 1
`;

/**
 * Deletes a user and every session of theirs at once, so no session outlives its user.
 * KEYS: user hash, users zset, user's session zset. ARGV: username key, session key prefix.
 * Returns the number of live sessions ended, or -1 when there is no such user.
 */
const DELETE_USER_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local ended = 0
for _, d in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  ended = ended + redis.call('DEL', ARGV[2] .. d)
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return ended
`;

/**
 * Stores a session if its user is still the one whose password was checked (not deleted, nor
 * deleted and made again, meanwhile), and indexes it under the user for deletion.
 * KEYS: user hash, user's session zset, session hash. ARGV: username key, username, account id,
 * csrf token, created ms, absolute end ms, idle ms, user's created ms, session digest, absolute ms.
 */
const CREATE_SESSION_LUA = `
local u = redis.call('HMGET', KEYS[1], 'accountId', 'createdAtMs')
if u[1] ~= ARGV[3] or u[2] ~= ARGV[8] then return 0 end
redis.call('HSET', KEYS[3], 'user', ARGV[1], 'username', ARGV[2], 'accountId', ARGV[3], 'csrf', ARGV[4],
  'createdAtMs', ARGV[5], 'expiresAtMs', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[9])
redis.call('PEXPIRE', KEYS[2], ARGV[10])
return 1
`;

/**
 * Reads a live session and pushes its idle expiry back (never past its absolute end).
 * KEYS: session hash. ARGV: now ms, idle ms. Returns username, account id, csrf, created, end.
 */
const TOUCH_SESSION_LUA = `
local s = redis.call('HMGET', KEYS[1], 'username', 'accountId', 'csrf', 'createdAtMs', 'expiresAtMs')
if not s[1] then return nil end
local left = tonumber(s[5]) - tonumber(ARGV[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return nil
end
redis.call('PEXPIRE', KEYS[1], math.min(left, tonumber(ARGV[2])))
return s
`;

/** KEYS: session hash. ARGV: user key prefix, session digest. */
const END_SESSION_LUA = `
local u = redis.call('HGET', KEYS[1], 'user')
if not u then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. u .. ':sessions', ARGV[2])
return 1
`;

/**
 * Counts a sign-in attempt against each key (username, address) unless one is at the limit: an
 * attempt counts as failed until it succeeds, so concurrent guesses cannot overrun the limit.
 * KEYS: counters. ARGV: limit, window ms. Returns 0, or the ms until the fullest counter resets.
 */
const BEGIN_ATTEMPT_LUA = `
local wait = 0
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') >= tonumber(ARGV[1]) then
    wait = math.max(wait, redis.call('PTTL', k), 1)
  end
end
if wait > 0 then return wait end
for _, k in ipairs(KEYS) do
  if redis.call('INCR', k) == 1 then redis.call('PEXPIRE', k, ARGV[2]) end
end
return 0
`;

/** KEYS: address counter, username counter. Never leaves a counter without its expiry. */
const SIGNED_IN_LUA = `
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
redis.call('DEL', KEYS[2])
return 1
`;

declare module "ioredis" {
  interface RedisCommander<Context> {
    steplineCreateUser(...args: string[]): Result<number, Context>;
    steplineDeleteUser(...args: string[]): Result<number, Context>;
    steplineCreateSession(...args: string[]): Result<number, Context>;
    steplineTouchSession(...args: string[]): Result<string[] | null, Context>;
    steplineEndSession(...args: string[]): Result<number, Context>;
    steplineBeginSignIn(...args: string[]): Result<number, Context>;
    steplineSignedIn(...args: string[]): Result<number, Context>;
  }
}

const SCRIPTS: Array<[string, number, string]> = [
  ["steplineCreateUser", 3, CREATE_USER_LUA],
  ["steplineDeleteUser", 3, DELETE_USER_LUA],
  ["steplineCreateSession", 3, CREATE_SESSION_LUA],
  ["steplineTouchSession", 1, TOUCH_SESSION_LUA],
  ["steplineEndSession", 1, END_SESSION_LUA],
  ["steplineBeginSignIn", 2, BEGIN_ATTEMPT_LUA],
  ["steplineSignedIn", 2, SIGNED_IN_LUA],
];

/** The Redis-backed user and session store. */
export class UserStore {
  private readonly p: string;
  private readonly clock: Clock;
  readonly idleMs: number;
  readonly absoluteMs: number;
  private readonly maxFailures: number;
  private readonly failureWindowMs: number;
  /** Verified against when the username is unknown, so both answers take as long. */
  private readonly decoy: Promise<string>;

  constructor(
    private readonly redis: Redis,
    opts: UserStoreOptions = {},
  ) {
    for (const [name, numberOfKeys, lua] of SCRIPTS) {
      // Defined once per client (several stores may share one).
      if (typeof (redis as unknown as Record<string, unknown>)[name] !== "function")
        redis.defineCommand(name, { numberOfKeys, lua });
    }
    this.p = opts.prefix ?? DEFAULT_PREFIX;
    this.clock = opts.clock ?? systemClock;
    this.idleMs = opts.idleMs ?? 12 * 3_600_000;
    this.absoluteMs = opts.absoluteMs ?? 7 * 86_400_000;
    this.maxFailures = opts.maxFailures ?? 10;
    this.failureWindowMs = opts.failureWindowMs ?? 15 * 60_000;
    // Made now, so the first unknown username is not the one slow answer (it hashes once).
    this.decoy = hash(newToken(), { algorithm: ARGON2ID });
  }

  private k = {
    users: () => `${this.p}users`,
    user: (key: string) => `${this.p}user:${key}`,
    userSessions: (key: string) => `${this.p}user:${key}:sessions`,
    session: (digest: string) => `${this.p}session:${digest}`,
    // TenancyStore's account hash: a user can only be made in an account that exists.
    account: (id: string) => `${this.p}acct:${id}`,
    failures: (kind: "user" | "addr", id: string) => `${this.p}signin-fails:${kind}:${id}`,
  };

  /** Creates a user; ConflictError when the username is taken (in any case). */
  async createUser(accountId: string, username: string, password: string): Promise<User> {
    const name = validateUsername(username);
    if (!accountId) throw new ValidationError("account_id is required");
    if (!isUlid(accountId))
      throw new ValidationError("account_id must be a ULID (26 characters, 0-9 and A-Z)");
    checkPassword(password);
    const user: User = { username: name, accountId, createdAtMs: this.clock.now() };
    const key = name.toLowerCase();
    const created = await this.redis.steplineCreateUser(
      this.k.user(key),
      this.k.users(),
      this.k.account(accountId),
      key,
      name,
      accountId,
      await hash(password, { algorithm: ARGON2ID }),
      String(user.createdAtMs),
    );
    if (created === -1) throw new NotFoundError(`account ${accountId} not found`);
    if (created !== 1) throw new ConflictError(`user "${name}" already exists`);
    return user;
  }

  /** Users, oldest first; of one account when `accountId` is given. */
  async listUsers(accountId = ""): Promise<User[]> {
    const keys = await this.redis.zrange(this.k.users(), "0", "-1");
    const rows = await Promise.all(keys.map((k) => this.redis.hgetall(this.k.user(k))));
    return rows
      .filter((r) => r.username && (!accountId || r.accountId === accountId))
      .map((r) => ({
        username: r.username ?? "",
        accountId: r.accountId ?? "",
        createdAtMs: Number(r.createdAtMs ?? 0),
      }));
  }

  /** Deletes a user and ends their sessions; returns how many were live. NotFoundError if none. */
  async deleteUser(username: string): Promise<number> {
    const key = validateUsername(username).toLowerCase();
    const ended = await this.redis.steplineDeleteUser(
      this.k.user(key),
      this.k.users(),
      this.k.userSessions(key),
      key,
      this.k.session(""),
    );
    if (ended < 0) throw new NotFoundError(`user "${username}" not found`);
    return ended;
  }

  /**
   * Checks a username and password from `addr` and, when they match, starts a session. A wrong
   * username and a wrong password look alike (same answer, an argon2 verify either way); failures
   * are limited per username and per address.
   */
  async signIn(username: string, password: string, addr: string): Promise<SignInResult> {
    // Malformed usernames name no one: they share one counter, which no user's sign-in uses.
    const key = USERNAME.test(username) ? username.toLowerCase() : "(malformed)";
    const counters = [this.k.failures("addr", addr.slice(0, 64)), this.k.failures("user", key)] as const;
    const wait = await this.redis.steplineBeginSignIn(
      ...counters,
      String(this.maxFailures),
      String(this.failureWindowMs),
    );
    if (wait > 0) return { kind: "limited", retryAfterMs: wait };
    const row = USERNAME.test(username) ? await this.redis.hgetall(this.k.user(key)) : {};
    const matches = await verifyHash(
      row.passwordHash ?? (await this.decoy),
      password.slice(0, MAX_PASSWORD_LENGTH),
    );
    const ok = matches && !!row.passwordHash && password.length <= MAX_PASSWORD_LENGTH;
    if (!ok || !row.username || !row.accountId) return { kind: "wrong" };
    // A success takes back its own count and clears the username's: a user who got in is no target.
    await this.redis.steplineSignedIn(...counters);
    return this.startSession(key, row.username, row.accountId, row.createdAtMs ?? "");
  }

  private async startSession(
    key: string,
    username: string,
    accountId: string,
    userCreatedAtMs: string,
  ): Promise<SignInResult> {
    const token = newToken();
    const now = this.clock.now();
    const session: Session = {
      username,
      accountId,
      csrfToken: newToken(),
      createdAtMs: now,
      expiresAtMs: now + this.absoluteMs,
    };
    const digest = tokenDigest(token);
    const stored = await this.redis.steplineCreateSession(
      this.k.user(key),
      this.k.userSessions(key),
      this.k.session(digest),
      key,
      username,
      accountId,
      session.csrfToken,
      String(now),
      String(session.expiresAtMs),
      String(this.idleMs),
      userCreatedAtMs,
      digest,
      String(this.absoluteMs),
    );
    // The user was deleted while their password was being checked.
    if (stored !== 1) return { kind: "wrong" };
    return { kind: "ok", token, session };
  }

  /** The live session of a cookie's token (its idle expiry pushed back), or null. */
  async touchSession(token: string): Promise<Session | null> {
    if (!TOKEN.test(token)) return null;
    const row = await this.redis.steplineTouchSession(
      this.k.session(tokenDigest(token)),
      String(this.clock.now()),
      String(this.idleMs),
    );
    if (!row) return null;
    const [username, accountId, csrfToken, createdAtMs, expiresAtMs] = row;
    return {
      username: username ?? "",
      accountId: accountId ?? "",
      csrfToken: csrfToken ?? "",
      createdAtMs: Number(createdAtMs),
      expiresAtMs: Number(expiresAtMs),
    };
  }

  /** Ends a session (sign-out); true when it was there. */
  async endSession(token: string): Promise<boolean> {
    if (!TOKEN.test(token)) return false;
    const digest = tokenDigest(token);
    return (await this.redis.steplineEndSession(this.k.session(digest), this.k.user(""), digest)) === 1;
  }
}

async function verifyHash(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password);
  } catch {
    return false; // a malformed stored hash matches nothing
  }
}

/** 32 random bytes, base64url (43 characters): session tokens and CSRF tokens. */
function newToken(): string {
  return randomBytes(32).toString("base64url");
}

/** What a session is stored under: the token itself never reaches Redis. */
export function tokenDigest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}
