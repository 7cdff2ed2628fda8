// Helpers for tests only (service tests and tests/): waiting on a condition with a deadline,
// reading the STEPLINE_TEST_* servers `npm test` started, and names that isolate one test from
// another. The bench (loadtest/) uses it too; no service imports it at run time.
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import type { Admin, ITopicConfig } from "kafkajs";

/** A probe's answer that means "not yet": undefined, null or false. Anything else (0 and "" too) is done. */
type NotYet = undefined | null | false;

export interface WaitOptions {
  /** Give up after this long (default 10 000 ms). */
  timeoutMs?: number;
  /** Pause between probes (default 10 ms). */
  intervalMs?: number;
}

/**
 * Polls `probe` until it returns something other than undefined, null or false, and returns that.
 * A probe that throws is retried (the server may not be up yet); at the deadline the error names
 * `what`, the last value seen, and carries the last probe error as `cause`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  opts: WaitOptions = {},
): Promise<Exclude<T, NotYet>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value as Exclude<T, NotYet>;
      last = value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const seen =
        lastError === undefined ? `last value: ${String(last)}` : `last error: ${String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${seen})`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A required STEPLINE_TEST_* variable (a test server's address); fails loudly when it is missing. */
export function requiredEnv(name: string): string {
  // The test runner passes the servers it started through the environment.
  const value = process.env[name];
  if (!value)
    throw new Error(`${name} is not set: run the tests with \`npm test\`, which starts the servers`);
  return value;
}

let counter = 0;

/**
 * A short tag unique to this process and call (time, counter, random), made of lowercase letters,
 * digits and underscores only, so it fits Redis keys, Kafka topic names and ClickHouse identifiers.
 * With a `prefix`, the tag is `<prefix>_<unique part>`.
 */
export function uniqueTag(prefix?: string): string {
  counter = (counter + 1) % 36 ** 3;
  const unique = `${Date.now().toString(36)}${counter.toString(36).padStart(3, "0")}${randomBytes(3).toString("hex")}`;
  return prefix ? `${prefix}_${unique}` : unique;
}

// Ports handed out by this process: never twice, even after the probe socket closed.
const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that was free a moment ago; the caller binds it soon after. It is drawn
 * below Linux's ephemeral range (32768-60999): a port the OS picked for listen(0) is also one it
 * may pick next as the local end of an outgoing connection (Kafka, Redis and HTTP clients open
 * many), which then takes it before the service under test binds it.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("no free port in 20000-31999 after 200 tries");
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * Creates topics and waits until each partition's leader answers for it. A broker that has just
 * started, or a topic just created, may still answer "does not host this topic-partition" (to
 * createTopics' own wait for leaders, to a producer, to a consumer), which failed a test's set-up
 * now and then; each attempt is safe to repeat (a topic that exists is left as it is).
 */
export async function createReadyTopics(admin: Admin, topics: ITopicConfig[]): Promise<void> {
  const names = topics.map((t) => t.topic).join(", ");
  await waitFor(
    `topics ${names} to be created`,
    async () => {
      await admin.createTopics({ topics, waitForLeaders: true });
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  for (const t of topics) {
    await waitFor(
      `topic ${t.topic} to be served`,
      async () => (await admin.fetchTopicOffsets(t.topic)).length === (t.numPartitions ?? 1),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  }
}
