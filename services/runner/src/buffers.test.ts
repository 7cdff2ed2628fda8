// Debounce and batching against a real Redis: which item each buffered event owes, when it is
// due, and what FireDebounce / FireBatch start (with a recording scheduler and queue).
import { newId } from "@stepline/internal/ids";
import { createLogger } from "@stepline/internal/log";
import { requiredEnv } from "@stepline/internal/testing";
import type { RunSpec } from "@stepline/proto/stepline/executor/v1/executor_service";
import type { NewItem } from "@stepline/proto/stepline/queue/v1/queue_service";
import { ItemKind } from "@stepline/proto/stepline/queue/v1/queue_service";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Admitter } from "./admission.js";
import type { BufferedEvent } from "./buffers.js";
import { Buffers, buffers } from "./buffers.js";
import { NO_FLOW } from "./flow.js";
import { idemKey, versionKey } from "./keys.js";
import type { FlowConfig, StoredFunction } from "./model.js";
import { Registry } from "./registry.js";
import { validateSync } from "./validate.js";

const REDIS_URL = requiredEnv("STEPLINE_TEST_REDIS_URL");
const env = `test-buf-${newId()}`;
let redis: Redis;
let registry: Registry;
let b: Buffers;
let enqueued: NewItem[];
let scheduled: RunSpec[];

/** A synced function with the given flow control (ms periods below the sync minimum, for speed). */
async function fnWith(id: string, flow: Partial<FlowConfig>): Promise<StoredFunction> {
  const sync = validateSync({
    accountId: "acct1",
    environmentId: env,
    appId: "app",
    url: "http://127.0.0.1:3000/api",
    sdk: "js:v4.24.0",
    framework: "nodejs",
    functions: [
      {
        id,
        name: id,
        triggers: [{ event: "buf/e", expression: "", cron: "" }],
        url: `http://127.0.0.1:3000/api?fnId=${id}&stepId=step`,
        retries: 0,
        rawJson: "",
      },
    ],
  });
  const def = sync.functions[0];
  if (!def) throw new Error("no function");
  const fn = { ...def, flow: { ...NO_FLOW, ...flow } };
  await registry.syncApp({ ...sync, appId: id, functions: [fn] });
  return { accountId: "acct1", appId: id, fn };
}

function ev(fn: StoredFunction, data: object, ts = Date.now(), eventId = newId()): BufferedEvent {
  const event = { name: "buf/e", id: eventId, ts, data };
  return { fn, environmentId: env, eventId, eventJson: JSON.stringify(event), event };
}

const payloadOf = (item: NewItem) => JSON.parse(item.payload) as { id: string; keyHash: string };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(() => {
  redis = new Redis(REDIS_URL);
  registry = new Registry(redis);
});
afterAll(async () => {
  const keys = await redis.keys(`r:{${env}}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});
beforeEach(() => {
  enqueued = [];
  scheduled = [];
  b = new Buffers({
    redis,
    registry,
    enqueue: async (items) => void enqueued.push(...items),
    schedule: async (runs) => void scheduled.push(...runs),
    clock: { now: () => Date.now() },
    log: createLogger("runner-test", "silent"),
  });
});

describe("debounce", () => {
  it("keeps the last event, pushes the due time back with each event, and starts one run with it", async () => {
    const fn = await fnWith("deb", { debounce: { periodMs: 300, timeoutMs: 0, key: "" } });
    const t = Date.now();
    await b.add([ev(fn, { n: 1 }, t), ev(fn, { n: 2 }, t + 1)]);
    // An older event arriving late does not replace the newer one.
    await b.add([ev(fn, { n: 0 }, t - 1_000)]);
    expect(new Set(enqueued.map((i) => i.id)).size).toBe(1);
    expect(enqueued[0]?.kind).toBe(ItemKind.ITEM_KIND_DEBOUNCE);
    const { id, keyHash } = payloadOf(enqueued[0] as NewItem);
    const req = { environmentId: env, functionId: "deb", debounceId: id, keyHash };
    // Fired early (the first item's due time passed; later events pushed it back): come again.
    const early = await b.fireDebounce(req);
    expect(early.runId).toBe("");
    expect(early.dueAtMs).toBeGreaterThan(Date.now());
    await sleep(early.dueAtMs - Date.now() + 20);
    const fired = await b.fireDebounce(req);
    expect(fired.runId).not.toBe("");
    expect(scheduled.map((r) => JSON.parse(r.eventsJson[0] ?? "{}").data)).toEqual([{ n: 2 }]);
    // A repeated fire starts the same run; an event after the fire opens a new debounce.
    expect((await b.fireDebounce(req)).runId).toBe(fired.runId);
    await b.add([ev(fn, { n: 3 })]);
    expect(payloadOf(enqueued.at(-1) as NewItem).id).not.toBe(id);
  });

  it("never pushes past the timeout, however steady the stream", async () => {
    const fn = await fnWith("deb-timeout", { debounce: { periodMs: 300, timeoutMs: 500, key: "" } });
    const first = Date.now();
    for (let i = 0; i < 8; i++) {
      await b.add([ev(fn, { i })]);
      await sleep(100);
    }
    const due = Math.max(...enqueued.map((i) => i.runAtMs));
    // Its first item was due a period after the first event; later ones pushed it, but not past
    // the deadline (first event + timeout; Redis time, within a few ms of ours).
    expect(due).toBeLessThanOrEqual(first + 500 + 20);
    expect(due).toBeGreaterThan(first + 300);
  });

  it("debounces each key value on its own", async () => {
    const fn = await fnWith("deb-key", {
      debounce: { periodMs: 60_000, timeoutMs: 0, key: "event.data.user" },
    });
    await b.add([ev(fn, { user: "a" }), ev(fn, { user: "b" }), ev(fn, { user: "a" })]);
    expect(new Set(enqueued.map((i) => i.id)).size).toBe(2);
  });
});

describe("a function whose config changed between deliveries of an event", () => {
  it("keeps the first decision: a run is not also debounced, a debounced event starts no second run", async () => {
    const plain = await fnWith("changing", {});
    const e = ev(plain, { n: 1 });
    const admitter = new Admitter(redis);
    const {
      decisions: [first],
    } = await admitter.admit([{ environmentId: env, fn: plain.fn, eventId: e.eventId, event: e.event }]);
    expect(first?.kind).toBe("run");
    const debounced = await fnWith("changing", { debounce: { periodMs: 1_000, timeoutMs: 0, key: "" } });
    await b.add([{ ...e, fn: debounced }]);
    expect(enqueued).toEqual([]);

    const other = ev(debounced, { n: 2 });
    await b.add([other]);
    expect(enqueued).toHaveLength(1);
    const again = await admitter.admit([
      { environmentId: env, fn: plain.fn, eventId: other.eventId, event: other.event },
    ]);
    expect(again).toEqual({ decisions: [{ kind: "buffered" }], stale: new Set() });
  });
});

describe("admission at the registry version the pairs were matched at", () => {
  it("decides nothing, spending no rate limit, when the version moved; decides at the current one", async () => {
    const fn = await fnWith("versioned", { rateLimit: { limit: 1, periodMs: 60_000, key: "" } });
    const e = ev(fn, { n: 1 });
    const version = (await redis.get(versionKey(env))) ?? "";
    const pair = { environmentId: env, fn: fn.fn, eventId: e.eventId, event: e.event };
    const admitter = new Admitter(redis);
    const moved = await admitter.admit([pair], () => `${version}0`);
    expect(moved.stale).toEqual(new Set([env]));
    expect(await redis.exists(idemKey(env, fn.fn.id, e.eventId))).toBe(0);
    const current = await admitter.admit([pair], () => version);
    expect(current).toEqual({ decisions: [{ kind: "run", runId: expect.any(String) }], stale: new Set() });
  });
});

describe("batching", () => {
  it("starts a run with a full batch at once, keeps order, and opens a new batch for the next event", async () => {
    const fn = await fnWith("bat", { batchEvents: { maxSize: 3, timeoutMs: 60_000, key: "", if: "" } });
    const events = [1, 2, 3, 4].map((n) => ev(fn, { n }));
    await b.add(events);
    // A redelivered event is not appended twice.
    await b.add([events[1] as BufferedEvent]);
    const ids = [...new Set(enqueued.map((i) => payloadOf(i).id))];
    expect(ids).toHaveLength(2);
    // The full batch owes an item due now (owed again by the redelivery: the queue collapses it).
    const full = enqueued.filter((i) => i.id.endsWith(":full"));
    expect(new Set(full.map((i) => i.id))).toEqual(new Set([`batch:bat:${ids[0]}:full`]));
    expect(full.every((i) => i.runAtMs === 0)).toBe(true);
    const timeout = enqueued.find((i) => i.id === `batch:bat:${ids[0]}`);
    expect(timeout?.runAtMs).toBeGreaterThan(Date.now() + 50_000);

    const first = await b.fireBatch({
      environmentId: env,
      functionId: "bat",
      batchId: ids[0] as string,
      keyHash: "",
    });
    expect(first.events).toBe(3);
    expect(scheduled[0]?.eventsJson.map((e) => JSON.parse(e).data.n)).toEqual([1, 2, 3]);
    const second = await b.fireBatch({
      environmentId: env,
      functionId: "bat",
      batchId: ids[1] as string,
      keyHash: "",
    });
    expect(second.events).toBe(1);
    // Firing again (the timeout item after the full one) starts the same run.
    const again = await b.fireBatch({
      environmentId: env,
      functionId: "bat",
      batchId: ids[0] as string,
      keyHash: "",
    });
    expect(again.runId).toBe(first.runId);
  });

  it("closes a batch at its timeout, so a later event opens a new one", async () => {
    const fn = await fnWith("bat-timeout", {
      batchEvents: { maxSize: 10, timeoutMs: 60_000, key: "", if: "" },
    });
    await b.add([ev(fn, { n: 1 })]);
    const id = payloadOf(enqueued[0] as NewItem).id;
    await b.fireBatch({ environmentId: env, functionId: "bat-timeout", batchId: id, keyHash: "" });
    await b.add([ev(fn, { n: 2 })]);
    expect(payloadOf(enqueued.at(-1) as NewItem).id).not.toBe(id);
  });

  it("lets an event that fails the batch `if` run at once, alone", async () => {
    const fn = await fnWith("bat-if", {
      batchEvents: { maxSize: 10, timeoutMs: 1_000, key: "", if: "event.data.ok == true" },
    });
    expect(buffers(fn, { data: { ok: true } })).toBe(true);
    expect(buffers(fn, { data: { ok: false } })).toBe(false);
  });
});
