// Starts a whole Stepline cluster for one test file: the five services as real processes against
// the test Kafka, Redis and ClickHouse (started by `npm test`), isolated by a topic prefix, a
// Redis database number and a ClickHouse database of their own. The queue may run as several
// replicas (processes sharing the Redis, splitting the shards); the executor then dials them all.

import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import type { WriteStream } from "node:fs";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@clickhouse/client";
import { useInternalToken } from "@stepline/internal/grpc";
import { freePort, requiredEnv, uniqueTag, waitFor } from "@stepline/internal/testing";
import { Redis } from "ioredis";
import { ensureTopics } from "../../scripts/infra/kafka.mjs";
import type { ServicePorts } from "../../scripts/services.mjs";
import { SERVICES, serviceEnv } from "../../scripts/services.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Every test cluster's internal gRPC token (STEPLINE_INTERNAL_TOKEN). One value for all, so test
 * files running side by side never disagree: this process's own clients send it, and so does
 * every CLI the tests run (it inherits the environment).
 */
export const INTERNAL_TOKEN = "stepline-tests-internal-token";
useInternalToken(INTERNAL_TOKEN);
process.env.STEPLINE_INTERNAL_TOKEN = INTERNAL_TOKEN;
export const SERVICE_NAMES = ["event-api", "runner", "queue", "executor", "history"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface ClusterOptions {
  /** Short name, used in topic prefixes, database names and log files. */
  name: string;
  /** Dev mode: any event key is accepted into the default environment. */
  dev: boolean;
  /** Extra environment for every service (e.g. short leases for fault tests). */
  env?: Record<string, string>;
  /** Queue processes to run (default 1), each with its own gRPC and admin ports. */
  queueReplicas?: number;
  /** Runner processes to run (default 1): they share the consumer group; others dial the first. */
  runnerReplicas?: number;
}

export interface Cluster {
  /** The event API base, e.g. http://127.0.0.1:41234. */
  apiUrl: string;
  /** gRPC control address of event-api (TenantService). */
  tenantAddr: string;
  /** gRPC data-plane address of event-api (EventService). */
  eventApiAddr: string;
  /** gRPC address of the executor (ExecutorService). */
  executorAddr: string;
  /** Kafka topic prefix of this cluster. */
  topicPrefix: string;
  redisUrl: string;
  /** gRPC addresses of the queue replicas (the executor's STEPLINE_QUEUE_GRPC_ADDR list). */
  queueAddrs: string[];
  /** Sends SIGKILL (or another signal) to one service (every replica of it) and waits for it to exit. */
  kill(name: ServiceName, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped service (every replica of it) again and waits until it is ready. */
  restart(name: ServiceName): Promise<void>;
  /** Stops every service (SIGTERM) and drops the cluster's ClickHouse database; safe to call twice. */
  stop(): Promise<void>;
  /** Everything the services wrote to stdout and stderr so far (complete once stop() resolved). */
  logs(): string;
  /** The value of a counter or gauge on a service's /metrics (its first replica); 0 when absent. */
  metric(name: ServiceName, metric: string): Promise<number>;
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
  const brokers = requiredEnv("STEPLINE_TEST_KAFKA_BROKERS");
  const clickhouseUrl = requiredEnv("STEPLINE_TEST_CLICKHOUSE_URL");
  const redisUrl = await claimRedisDb(requiredEnv("STEPLINE_TEST_REDIS_URL"));
  const tag = uniqueTag(opts.name);
  const topicPrefix = `e2e.${tag}.`;
  const database = `e2e_${tag}`.replace(/[^A-Za-z0-9_]/g, "_");

  await ensureTopics(brokers, topicPrefix);

  const ports: ServicePorts[] = [];
  for (const s of SERVICES) {
    ports.push({
      name: s.name,
      grpcPort: await freePort(),
      adminPort: await freePort(),
      ...(s.httpPort ? { httpPort: await freePort() } : {}),
      ...(s.controlPort ? { controlPort: await freePort() } : {}),
    });
  }
  const envs = serviceEnv(
    { kafkaBrokers: brokers, redisUrl, clickhouseUrl },
    {
      dev: opts.dev,
      services: ports,
      topicPrefix,
      clickhouseDatabase: database,
      internalToken: INTERNAL_TOKEN,
    },
  );
  const portsOf = (name: ServiceName) => {
    const p = ports.find((s) => s.name === name);
    if (!p) throw new Error(`no ports for ${name}`);
    return p;
  };

  /** One process: a service, or one replica of the queue or runner ("queue", "queue-2", ...). */
  interface Instance {
    id: string;
    service: ServiceName;
    adminPort: number;
    env: Record<string, string>;
  }
  const queue = portsOf("queue");
  const queueReplicas = [{ grpcPort: queue.grpcPort, adminPort: queue.adminPort }];
  for (let i = 1; i < (opts.queueReplicas ?? 1); i++) {
    queueReplicas.push({ grpcPort: await freePort(), adminPort: await freePort() });
  }
  const queueAddrs = queueReplicas.map((r) => `127.0.0.1:${r.grpcPort}`);
  const runner = portsOf("runner");
  const runnerReplicas = [{ grpcPort: runner.grpcPort, adminPort: runner.adminPort }];
  for (let i = 1; i < (opts.runnerReplicas ?? 1); i++) {
    runnerReplicas.push({ grpcPort: await freePort(), adminPort: await freePort() });
  }
  const common = { PATH: process.env.PATH ?? "" };
  // History's group commit waits a second in production; tests read history back sooner.
  const logLevel = {
    STEPLINE_LOG_LEVEL: process.env.STEPLINE_TEST_LOG_LEVEL ?? "info",
    STEPLINE_HISTORY_FLUSH_MS: "200",
    // The tests' apps listen on loopback, which production mode does not call unless allowed.
    STEPLINE_EXECUTOR_EGRESS_ALLOW: "127.0.0.1",
  };
  const instances: Instance[] = SERVICE_NAMES.flatMap((service): Instance[] => {
    if (service === "queue") {
      // Each replica listens on its own address; the other services keep the first one.
      return queueReplicas.map((r, i) => ({
        id: i === 0 ? "queue" : `queue-${i + 1}`,
        service,
        adminPort: r.adminPort,
        env: {
          ...common,
          ...envs.queue,
          ...logLevel,
          ...opts.env,
          STEPLINE_QUEUE_GRPC_ADDR: `127.0.0.1:${r.grpcPort}`,
          STEPLINE_ADMIN_PORT: String(r.adminPort),
        },
      }));
    }
    if (service === "runner") {
      return runnerReplicas.map((r, i) => ({
        id: i === 0 ? "runner" : `runner-${i + 1}`,
        service,
        adminPort: r.adminPort,
        env: {
          ...common,
          ...envs.runner,
          ...logLevel,
          ...opts.env,
          STEPLINE_RUNNER_GRPC_ADDR: `127.0.0.1:${r.grpcPort}`,
          STEPLINE_ADMIN_PORT: String(r.adminPort),
        },
      }));
    }
    // Only the executor takes a list of queue replicas: it needs a Work stream to each.
    const queueAddr: Record<string, string> =
      service === "executor" ? { STEPLINE_QUEUE_GRPC_ADDR: queueAddrs.join(",") } : {};
    const env = { ...common, ...envs[service], ...logLevel, ...opts.env, ...queueAddr };
    return [{ id: service, service, adminPort: portsOf(service).adminPort, env }];
  });
  const instancesOf = (name: ServiceName) => instances.filter((i) => i.service === name);

  const logDir = join(ROOT, ".stepline/test/logs");
  mkdirSync(logDir, { recursive: true });
  const procs = new Map<string, ChildProcess>();
  const logFiles = new Set<string>();
  const logStreams: WriteStream[] = [];

  const launch = (inst: Instance) => {
    const file = join(logDir, `${tag}-${inst.id}.log`);
    logFiles.add(file);
    const log = createWriteStream(file, { flags: "a" });
    logStreams.push(log);
    const child = spawn(process.execPath, [join(ROOT, `services/${inst.service}/dist/main.js`)], {
      env: inst.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    // Both streams feed one file, which closes once the process and its pipes are done.
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once("close", () => log.end());
    procs.set(inst.id, child);
  };
  const ready = async (inst: Instance) => {
    await waitFor(
      `${inst.id} to be ready (log: .stepline/test/logs/${tag}-${inst.id}.log)`,
      async () => {
        const child = procs.get(inst.id);
        if (child?.exitCode !== null)
          throw new Error(`${inst.id} exited with ${child?.exitCode}: ${logTail(`${tag}-${inst.id}`)}`);
        return (await fetch(`http://127.0.0.1:${inst.adminPort}/readyz`)).status === 200;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  };
  const exit = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
    });

  // CI keeps only the test output: a service that died at start says why there.
  const logTail = (name: string) => {
    try {
      return readFileSync(join(logDir, `${name}.log`), "utf8")
        .trim()
        .split("\n")
        .slice(-5)
        .join("\n");
    } catch {
      return "(no log)";
    }
  };

  for (const inst of instances) launch(inst);
  try {
    await Promise.all(instances.map(ready));
  } catch (err) {
    for (const c of procs.values()) c.kill("SIGKILL");
    throw err;
  }

  let stopped = false;
  return {
    apiUrl: `http://127.0.0.1:${portsOf("event-api").httpPort}`,
    tenantAddr: `127.0.0.1:${portsOf("event-api").controlPort}`,
    eventApiAddr: `127.0.0.1:${portsOf("event-api").grpcPort}`,
    executorAddr: `127.0.0.1:${portsOf("executor").grpcPort}`,
    topicPrefix,
    redisUrl,
    queueAddrs,
    async kill(name, signal = "SIGKILL") {
      const children = instancesOf(name).flatMap((i) => procs.get(i.id) ?? []);
      for (const child of children) child.kill(signal);
      await Promise.all(children.map(exit));
    },
    async restart(name) {
      const replicas = instancesOf(name);
      for (const inst of replicas) launch(inst);
      await Promise.all(replicas.map(ready));
    },
    logs() {
      return [...logFiles].map((f) => readFileSync(f, "utf8")).join("\n");
    },
    async metric(name, metric) {
      const inst = instancesOf(name)[0];
      const text = await (await fetch(`http://127.0.0.1:${inst?.adminPort}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${metric} `));
      return line ? Number(line.slice(metric.length + 1)) : 0;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const children = [...procs.values()];
      for (const c of children) c.kill("SIGTERM");
      const deadline = setTimeout(() => {
        for (const c of children) c.kill("SIGKILL");
      }, 15_000);
      await Promise.all(children.map(exit));
      clearTimeout(deadline);
      await Promise.all(
        logStreams.map(
          (w) => new Promise<void>((resolve) => (w.writableFinished ? resolve() : w.once("finish", resolve))),
        ),
      );
      const ch = createClient({ url: clickhouseUrl });
      await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` });
      await ch.close();
    },
  };
}
