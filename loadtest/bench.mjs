// `npm run bench`: load scenarios against a started cluster (`npm start -- --dev`), printed as one
// table. See loadtest/README.md for what each figure means.
//
//   ingest   POST /e/<key>, one event per request, N connections (autocannon): events/s, p50/p99
//   runs     closed loop, C clients: each sends an event to a 3-step function and waits for the
//            run's last step to reach the app (the app tells this process, so nobody polls), then
//            sends the next: runs/s, p50/p99 of event sent -> last step ran, and the engine's CPU
//            per step (every service, Kafka, Redis, ClickHouse; from /proc per process, idle
//            rate subtracted), for a minimal protocol app and for an app on the official SDK.
//
// Usage: npm run bench -- [--url http://127.0.0.1:8288] [--duration 10] [--concurrency 1,16,64]
//                         [--connections 64] [--profile dev] [--redis-port 6379] [--only min|sdk]
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { startMinimalApp } from "./apps/minimal-app.mjs";
import { startSdkApp } from "./apps/sdk-app.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8288" },
    duration: { type: "string", default: "10" },
    concurrency: { type: "string", default: "1,16,64" },
    connections: { type: "string", default: "64" },
    profile: { type: "string", default: "dev" },
    "redis-port": { type: "string", default: "6379" },
    only: { type: "string" },
  },
});
const BASE = args.url;
const DURATION_MS = Number(args.duration) * 1000;
const CONCURRENCY = args.concurrency.split(",").map(Number);
const STEPS = 3;
const EVENT_KEY = "bench-key"; // dev mode takes any key
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** The engine's processes, by name (every service, Kafka, Redis and ClickHouse of the profile). */
function engineProcesses() {
  const out = new Map();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    if (Number(pid) === process.pid) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
    } catch {
      continue;
    }
    const service = /services\/(event-api|runner|queue|executor|history)\/dist\/main\.js/.exec(cmd)?.[1];
    const profileDir = `.stepline/${args.profile}/`;
    let name = service;
    if (!name && cmd.includes("kafka.Kafka") && cmd.includes(profileDir)) name = "kafka";
    if (!name && /clickhouse/.test(cmd.split(" ")[0] ?? "") && cmd.includes(profileDir)) name = "clickhouse";
    if (!name && /redis-server/.test(cmd) && cmd.includes(`:${args["redis-port"]}`)) name = "redis";
    if (!name) continue;
    const list = out.get(name) ?? [];
    list.push(Number(pid));
    out.set(name, list);
  }
  return out;
}

/** CPU seconds used so far by each process group. */
function cpuSeconds(procs) {
  const out = {};
  for (const [name, pids] of procs) {
    let ticks = 0;
    for (const pid of pids) {
      try {
        // Fields after the command name (which may hold spaces) start at ") ".
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        ticks += Number(f[11]) + Number(f[12]); // utime, stime
      } catch {}
    }
    out[name] = ticks / CLK_TCK;
  }
  return out;
}

const diff = (a, b) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
const round = (n, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

async function send(name, data) {
  const res = await fetch(`${BASE}/e/${EVENT_KEY}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, data }),
  });
  if (res.status !== 200) throw new Error(`POST /e answered ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
}

/** Waiters for runs by key: the apps call `done(k)` from the run's last step. */
const waiters = new Map();
const done = (k) => {
  const w = waiters.get(k);
  if (w) {
    waiters.delete(k);
    w();
  }
};

/** Closed-loop runs of `event` with `clients` clients for DURATION_MS. */
async function runLoad(label, event, clients, procs, idleRate) {
  const latencies = [];
  let failed = 0;
  let seq = 0;
  const cpu0 = cpuSeconds(procs);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() - t0 < DURATION_MS) {
        const k = `${label}-${clients}-${seq++}`;
        const finished = new Promise((resolve) => waiters.set(k, resolve));
        const start = performance.now();
        await send(event, { k });
        const ok = await Promise.race([finished.then(() => true), sleep(60_000).then(() => false)]);
        if (ok) latencies.push(performance.now() - start);
        else {
          waiters.delete(k);
          failed++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  // The last runs' ends (history, end events) follow their last step: let them land.
  await sleep(1_000);
  const used = diff(cpu0, cpuSeconds(procs));
  const window = elapsed + 1;
  const steps = latencies.length * STEPS;
  const perStepMs = {};
  let total = 0;
  for (const [name, s] of Object.entries(used)) {
    const busy = Math.max(0, s - (idleRate[name] ?? 0) * window);
    perStepMs[name] = steps > 0 ? round((busy / steps) * 1000, 3) : 0;
    total += busy;
  }
  latencies.sort((a, b) => a - b);
  return {
    scenario: `runs (${label})`,
    concurrency: clients,
    runsPerSec: round(latencies.length / elapsed),
    p50Ms: round(pct(latencies, 0.5)),
    p99Ms: round(pct(latencies, 0.99)),
    failed,
    engineCpuPerStepMs: steps > 0 ? round((total / steps) * 1000, 3) : 0,
    perProcessMs: perStepMs,
  };
}

async function ingest(connections) {
  const result = await autocannon({
    url: `${BASE}/e/${EVENT_KEY}`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "bench/ingest", data: { n: 1 } }),
    connections,
    duration: DURATION_MS / 1000,
  });
  return {
    scenario: "ingest",
    concurrency: connections,
    eventsPerSec: round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx,
  };
}

async function main() {
  try {
    await fetch(BASE);
  } catch {
    throw new Error(`no Stepline at ${BASE}: start one with "npm start -- --dev" (or pass --url)`);
  }
  const procs = engineProcesses();
  const missing = [
    "event-api",
    "runner",
    "queue",
    "executor",
    "history",
    "kafka",
    "redis",
    "clickhouse",
  ].filter((n) => !procs.has(n));
  if (missing.length > 0)
    process.stderr.write(`note: no process found for ${missing.join(", ")}; their CPU is not counted\n`);

  const minimal = await startMinimalApp({ appId: "bench-min", steps: STEPS, onDone: done });
  const sdk = await startSdkApp({ appId: "bench-sdk", baseUrl: BASE, onDone: done });
  const sdkOneStep = await startSdkApp({
    appId: "bench-sdk1",
    baseUrl: BASE,
    checkpointing: false,
    onDone: done,
  });
  const reg = await fetch(`${BASE}/fn/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(minimal.registration),
  });
  if (reg.status !== 200)
    throw new Error(`sync of the minimal app answered ${reg.status}: ${await reg.text()}`);
  await sdk.sync();
  await sdkOneStep.sync();

  // The engine's idle CPU rate, subtracted from each scenario's window.
  const idle0 = cpuSeconds(procs);
  await sleep(2_000);
  const idleRate = Object.fromEntries(
    Object.entries(diff(idle0, cpuSeconds(procs))).map(([k, v]) => [k, v / 2]),
  );

  const rows = [];
  const print = (row) => {
    rows.push(row);
    process.stdout.write(`${JSON.stringify(row)}\n`);
  };
  // Warm-up: JIT, connections, scripts.
  await runLoad("warm-up", "bench-min/run", 4, procs, idleRate);
  print(await ingest(Number(args.connections)));
  for (const [label, event] of [
    ["minimal app", "bench-min/run"],
    ["SDK v4 app", "bench-sdk/run"],
    ["SDK v4 app, checkpointing off", "bench-sdk1/run"],
  ]) {
    if (args.only && !label.toLowerCase().startsWith(args.only)) continue;
    for (const c of CONCURRENCY) print(await runLoad(label, event, c, procs, idleRate));
  }
  await minimal.close();
  await sdk.close();
  await sdkOneStep.close();

  process.stdout.write(
    "\n| scenario | clients | events/s or runs/s | p50 ms | p99 ms | engine CPU ms/step | biggest (ms/step) |\n",
  );
  process.stdout.write("|---|---|---|---|---|---|---|\n");
  for (const r of rows) {
    const top = r.perProcessMs
      ? Object.entries(r.perProcessMs)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([n, v]) => `${n} ${v}`)
          .join(", ")
      : "";
    const rate = r.eventsPerSec ?? r.runsPerSec;
    process.stdout.write(
      `| ${r.scenario} | ${r.concurrency} | ${rate} | ${r.p50Ms} | ${r.p99Ms} | ${r.engineCpuPerStepMs ?? ""} | ${top} |\n`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench: ${err.message}\n`);
    process.exit(1);
  },
);
