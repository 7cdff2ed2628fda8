// Which replica schedules which shard. Replicas heartbeat into a membership ZSET (scored by Redis
// time); each shard's preferred owner is the live member with the highest rendezvous hash, so a
// join or a departure moves only that member's share. The preferred owner takes the shard's owner
// lease (SET NX PX via owner-acquire.lua) and renews it every lease/3; a replica that is no longer
// preferred stops scheduling the shard, then releases it. Safety does not rest on this: claim and
// reclaim are fenced by the owner token inside the scripts.
import { createHash } from "node:crypto";
import type { Logger } from "@stepline/internal/log";
import { globalKeys } from "./keys.js";
import { ownedShards } from "./metrics.js";
import type { Queue } from "./queue.js";
import type { Scripts } from "./scripts.js";
import { ACQUIRED, acquireOwners, HELD, releaseOwners } from "./store.js";

export interface OwnershipOptions {
  namespace: string;
  /** This replica's token (also its member id). */
  token: string;
  /** Owner lease, ms; renewed every third of it. */
  leaseMs: number;
}

export interface OwnershipEvents {
  /** The shard is ours: start scheduling it. */
  acquired(shard: number): void;
  /** The shard is not ours any more: stop scheduling it (before it is released). */
  lost(shard: number): void;
}

/** Rendezvous weight of (member, shard). */
function weight(member: string, shard: number): bigint {
  return createHash("sha1").update(`${member}/${shard}`).digest().readBigUInt64BE(0);
}

/** The shards `self` should own among `members` (rendezvous hashing). */
export function preferredShards(self: string, members: readonly string[], shards: number): number[] {
  const out: number[] = [];
  for (let shard = 0; shard < shards; shard++) {
    let best = self;
    let bestWeight = weight(self, shard);
    for (const m of members) {
      const w = weight(m, shard);
      if (w > bestWeight || (w === bestWeight && m > best)) {
        best = m;
        bestWeight = w;
      }
    }
    if (best === self) out.push(shard);
  }
  return out;
}

export class Ownership {
  private readonly owned = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;
  private readonly membersKey: string;
  /** The last rendezvous result (256 hashes per member to compute), by its members. */
  private preferredFor: { members: string; shards: Set<number> } | undefined;

  constructor(
    private readonly scripts: Scripts,
    private readonly queue: Queue,
    private readonly options: OwnershipOptions,
    private readonly events: OwnershipEvents,
    private readonly log: Logger,
  ) {
    this.membersKey = globalKeys(options.namespace).members;
  }

  /** True while this replica holds the shard. */
  has(shard: number): boolean {
    return this.owned.has(shard);
  }

  /** The number of shards held. */
  count(): number {
    return this.owned.size;
  }

  /** Takes this replica's shards now, then keeps renewing them. */
  async start(): Promise<void> {
    await this.tick();
    this.schedule();
  }

  /** One round: heartbeat, then acquire or renew the preferred shards and let go of the rest. */
  tick(): Promise<void> {
    this.ticking ??= this.runTick().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /** Stops renewing, stops scheduling every shard, releases them and leaves the membership. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.ticking;
    const shards = [...this.owned];
    for (const shard of shards) this.lose(shard);
    await releaseOwners(
      this.scripts,
      shards.map((s) => this.queue.keys(s)),
      this.options.token,
    );
    await this.scripts.redis.zrem(this.membersKey, this.options.token);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.tick().then(
          () => this.schedule(),
          (err: unknown) => {
            this.log.error({ err }, "shard ownership round failed");
            this.schedule();
          },
        );
      },
      Math.max(100, Math.floor(this.options.leaseMs / 3)),
    );
  }

  private async runTick(): Promise<void> {
    if (this.stopped) return;
    const preferred = this.preferred(await this.heartbeat());
    const codes = await acquireOwners(
      this.scripts,
      [...preferred].map((s) => this.queue.keys(s)),
      this.options.token,
      this.options.leaseMs,
    );
    // Recorded even if stop() began meanwhile: stop() waits for this round, then releases all it holds.
    [...preferred].forEach((shard, i) => {
      if (codes[i] === HELD) this.lose(shard);
      else if (codes[i] === ACQUIRED || !this.owned.has(shard)) this.gain(shard);
    });
    const handOff = [...this.owned].filter((s) => !preferred.has(s));
    for (const shard of handOff) this.lose(shard);
    await releaseOwners(
      this.scripts,
      handOff.map((s) => this.queue.keys(s)),
      this.options.token,
    );
    ownedShards.set(this.owned.size);
  }

  /** Refreshes this replica's membership and returns the live members (Redis time). */
  private async heartbeat(): Promise<string[]> {
    const redis = this.scripts.redis;
    const [sec, micro] = await redis.time();
    const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
    // One key, so one pipeline even on Redis Cluster.
    const replies = await redis
      .pipeline()
      .zadd(this.membersKey, now + this.options.leaseMs, this.options.token)
      .zremrangebyscore(this.membersKey, "-inf", now)
      .zrange(this.membersKey, 0, "-1")
      .exec();
    for (const [err] of replies ?? []) if (err) throw err;
    const members = replies?.[2]?.[1];
    if (!Array.isArray(members)) throw new Error("shard ownership: the membership read gave no list");
    return members as string[];
  }

  /** This replica's preferred shards among `members`, recomputed only when the members change. */
  private preferred(members: string[]): Set<number> {
    const key = [...members].sort().join("\n");
    if (this.preferredFor?.members !== key) {
      const shards = new Set(preferredShards(this.options.token, members, this.queue.shards));
      this.preferredFor = { members: key, shards };
    }
    return this.preferredFor.shards;
  }

  private gain(shard: number): void {
    // ACQUIRED on a shard we thought we held means the lease had lapsed: adopt afresh.
    if (this.owned.has(shard)) this.events.lost(shard);
    this.owned.add(shard);
    this.events.acquired(shard);
  }

  private lose(shard: number): void {
    if (!this.owned.delete(shard)) return;
    this.log.debug({ shard }, "no longer schedules shard");
    this.events.lost(shard);
  }
}
