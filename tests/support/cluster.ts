// Starts a whole Stepline cluster for one test file: the five services as real processes against
// the test Kafka, Redis and ClickHouse (started by `npm test`), isolated by a topic prefix, a
// Redis database number and a ClickHouse database of their own.

import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@clickhouse/client";
import { Redis } from "ioredis";
import { ensureTopics } from "../../scripts/infra/kafka.mjs";
import type { ServicePorts } from "../../scripts/services.mjs";
import { SERVICES, serviceEnv } from "../../scripts/services.mjs";
import { waitFor } from "./wait.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const SERVICE_NAMES = ["event-api", "runner", "queue", "executor", "history"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface ClusterOptions {
  /** Short name, used in topic prefixes, database names and log files. */
  name: string;
  /** Dev mode: any event key is accepted into the default environment. */
  dev: boolean;
  /** Extra environment for every service (e.g. short leases for fault tests). */
  env?: Record<string, string>;
}

export interface Cluster {
  /** The event API base, e.g. http://127.0.0.1:41234. */
  apiUrl: string;
  /** gRPC address of event-api (TenantService). */
  tenantAddr: string;
  /** Kafka topic prefix of this cluster. */
  topicPrefix: string;
  redisUrl: string;
  /** Sends SIGKILL (or another signal) to one service and waits for it to exit. */
  kill(name: ServiceName, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped service again and waits until it is ready. */
  restart(name: ServiceName): Promise<void>;
  stop(): Promise<void>;
}

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with \`npm test\`, which starts the servers`);
  return v;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Picks a Redis DB for this cluster and empties it (the test Redis belongs to the tests). */
async function claimRedisDb(baseUrl: string): Promise<string> {
  const admin = new Redis(baseUrl);
  try {
    const n = await admin.incr("stepline-test:db-counter");
    const db = (n % 15) + 1;
    const url = `${baseUrl.replace(/\/\d*$/, "")}/${db}`;
    const client = new Redis(url);
    await client.flushdb();
    client.disconnect();
    return url;
  } finally {
    admin.disconnect();
  }
}

/** Starts the cluster and waits until every service reports ready. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const brokers = required("STEPLINE_TEST_KAFKA_BROKERS");
  const clickhouseUrl = required("STEPLINE_TEST_CLICKHOUSE_URL");
  const redisUrl = await claimRedisDb(required("STEPLINE_TEST_REDIS_URL"));
  const tag = `${opts.name}_${Date.now().toString(36)}`;
  const topicPrefix = `e2e.${tag}.`;
  const database = `e2e_${tag}`.replace(/[^A-Za-z0-9_]/g, "_");

  await ensureTopics(brokers, topicPrefix);

  const names = [...SERVICE_NAMES];
  const ports: ServicePorts[] = [];
  for (const s of SERVICES) {
    ports.push({
      name: s.name,
      grpcPort: await freePort(),
      adminPort: await freePort(),
      ...(s.httpPort ? { httpPort: await freePort() } : {}),
    });
  }
  const envs = serviceEnv(
    { kafkaBrokers: brokers, redisUrl, clickhouseUrl },
    { dev: opts.dev, services: ports, topicPrefix, clickhouseDatabase: database },
  );
  const portsOf = (name: ServiceName) => {
    const p = ports.find((s) => s.name === name);
    if (!p) throw new Error(`no ports for ${name}`);
    return p;
  };
  const envOf = (name: ServiceName): Record<string, string> => ({
    PATH: process.env.PATH ?? "",
    ...envs[name],
    STEPLINE_LOG_LEVEL: process.env.STEPLINE_TEST_LOG_LEVEL ?? "info",
    ...opts.env,
  });

  const logDir = join(ROOT, ".stepline/test/logs");
  mkdirSync(logDir, { recursive: true });
  const procs = new Map<ServiceName, ChildProcess>();

  const launch = (name: ServiceName) => {
    const log = createWriteStream(join(logDir, `${tag}-${name}.log`), { flags: "a" });
    const child = spawn(process.execPath, [join(ROOT, `services/${name}/dist/main.js`)], {
      env: envOf(name),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    procs.set(name, child);
  };
  const ready = async (name: ServiceName) => {
    await waitFor(
      `${name} to be ready (log: .stepline/test/logs/${tag}-${name}.log)`,
      async () => {
        const child = procs.get(name);
        if (child?.exitCode !== null) throw new Error(`${name} exited with ${child?.exitCode}`);
        return (await fetch(`http://127.0.0.1:${portsOf(name).adminPort}/readyz`)).status;
      },
      (status) => status === 200,
      60_000,
      100,
    );
  };
  const exit = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
    });

  for (const n of names) launch(n);
  try {
    await Promise.all(names.map(ready));
  } catch (err) {
    for (const c of procs.values()) c.kill("SIGKILL");
    throw err;
  }

  return {
    apiUrl: `http://127.0.0.1:${portsOf("event-api").httpPort}`,
    tenantAddr: `127.0.0.1:${portsOf("event-api").grpcPort}`,
    topicPrefix,
    redisUrl,
    async kill(name, signal = "SIGKILL") {
      const child = procs.get(name);
      if (!child) return;
      child.kill(signal);
      await exit(child);
    },
    async restart(name) {
      launch(name);
      await ready(name);
    },
    async stop() {
      const children = [...procs.values()];
      for (const c of children) c.kill("SIGTERM");
      const deadline = setTimeout(() => {
        for (const c of children) c.kill("SIGKILL");
      }, 15_000);
      await Promise.all(children.map(exit));
      clearTimeout(deadline);
      const ch = createClient({ url: clickhouseUrl });
      await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` });
      await ch.close();
    },
  };
}
