// `npm run bench`: load scenarios against a started cluster (`npm start -- --dev`), printed as one
// table. See loadtest/README.md for what each figure means.
//
//   ingest   POST /e/<key>, one event per request, N connections (autocannon): events/s, p50/p99,
//            and the engine's CPU per event
//   runs     closed loop, C clients: each sends an event to a 3-step function and waits for the
//            run's last step to reach the app (the app tells this process, so nobody polls), then
//            sends the next: runs/s, p50/p99 of event sent -> last step ran, and the engine's CPU
//            per step (every service, Kafka, Redis, ClickHouse; from /proc per process, idle
//            rate subtracted), for a minimal protocol app and for an app on the official SDK.
//
// Usage: npm run bench -- [--url http://127.0.0.1:8288] [--duration 10] [--concurrency 1,16,64]
//                         [--connections 64] [--profile dev] [--redis-port 6379] [--only ingest,min,sdk]
//                         [--restate] [--warm-up 20] [--jit-settle 120] [--repeat 1] [--steps 3]
//                         [--help]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { startMinimalApp } from "./apps/minimal-app.mjs";
import { startSdkApp } from "./apps/sdk-app.mjs";
import { cpuSeconds, diff, engineProcesses, idleRates, sleepCounts } from "./engine-cpu.mjs";
import { sdkCeiling, startNullEngine } from "./sdk-ceiling.mjs";
import { describeWakeUps, probeWakeUps } from "./wake-up-probe.mjs";

const { values: args } = parseCommandLine({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8288" },
    duration: { type: "string", default: "10" },
    concurrency: { type: "string", default: "1,16,64" },
    connections: { type: "string", default: "64" },
    profile: { type: "string", default: "dev" },
    "redis-port": { type: "string", default: "6379" },
    only: { type: "string" },
    restate: { type: "boolean", default: false },
    "warm-up": { type: "string", default: "20" },
    "jit-settle": { type: "string", default: "120" },
    repeat: { type: "string", default: "1" },
    steps: { type: "string", default: "3" },
    help: { type: "boolean", default: false },
  },
});
/** parseArgs, with a one-line error for a bad command line instead of a stack trace. */
function parseCommandLine(config) {
  try {
    return parseArgs(config);
  } catch (err) {
    process.stderr.write(`bench: ${err.message} (--help lists the options)\n`);
    process.exit(2);
  }
}
if (args.help) {
  // The usage is this file's opening comment.
  const source = readFileSync(new URL(import.meta.url), "utf8");
  const head = source.slice(0, source.indexOf("\nimport "));
  process.stdout.write(`${head.replace(/^\/\/ ?/gm, "")}\n`);
  process.exit(0);
}
const BASE = args.url;
/** `--only ingest,min`: the scenarios whose label starts with one of these (all by default). */
const wanted = (label) =>
  !args.only || args.only.split(",").some((w) => label.toLowerCase().startsWith(w.trim().toLowerCase()));
const DURATION_MS = Number(args.duration) * 1000;
const WARM_UP_MS = Number(args["warm-up"]) * 1000;
/** Each SDK scenario's own warm-up, and its ceiling's: a quarter of the engine's. */
const SCENARIO_WARM_UP_MS = WARM_UP_MS / 4;
/** Most seconds of further warm-up while Kafka's JIT compiler is still busy (see warmUntilJitSettles). */
const JIT_SETTLE_MAX_MS = Number(args["jit-settle"]) * 1000;
/** Kafka's JIT counts as settled below this share of one core over a warm-up round. */
const JIT_SETTLED_SHARE = 0.03;
const CONCURRENCY = args.concurrency.split(",").map(Number);
const REPEAT = Math.max(1, Math.floor(Number(args.repeat)) || 1);
/** Steps per run of the SDK apps and Restate's handler; the minimal app's is `--steps`. */
const STEPS = 3;
const MIN_STEPS = Math.max(1, Math.floor(Number(args.steps)) || STEPS);
const EVENT_KEY = "bench-key"; // dev mode takes any key
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** The idle rates of a warm-up, whose figures nobody reads. */
const NO_IDLE = { cpu: {}, sleeps: {} };
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
const round = (n, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

/**
 * More warm-up rounds (5 s, 16 clients, minimal app) while Kafka's JIT compiler threads used more
 * than JIT_SETTLED_SHARE of a core in the last one, for at most JIT_SETTLE_MAX_MS. On a slow
 * machine a fresh Kafka compiled for minutes, at a quarter of a core: measured then, it doubled
 * Kafka's CPU per step. Returns the extra seconds spent and the last round's share.
 */
async function warmUntilJitSettles(procs) {
  const t0 = performance.now();
  let share = 0;
  while (procs.has("kafka") && performance.now() - t0 < JIT_SETTLE_MAX_MS) {
    const before = cpuSeconds(procs)["kafka-jit"];
    const r0 = performance.now();
    await runLoad("warm-up", (k) => send("bench-min/run", { k }), 16, procs, NO_IDLE, 5_000, MIN_STEPS);
    share = (cpuSeconds(procs)["kafka-jit"] - before) / ((performance.now() - r0) / 1000);
    if (share < JIT_SETTLED_SHARE) break;
  }
  return { extraSeconds: round((performance.now() - t0) / 1000), kafkaJitShareOfCore: round(share, 3) };
}

async function send(name, data) {
  const res = await fetch(`${BASE}/e/${EVENT_KEY}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, data }),
  });
  if (res.status !== 200) throw new Error(`POST /e answered ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
}

/**
 * Per-hop latency, from the minimal app's side: when a run's event was sent, and when each of its
 * calls arrived. The app answers as it receives a call, so the gap between two calls of a run is
 * "one step's answer -> the next call reaches the app".
 */
const hops = { sentAt: new Map(), lastCallAt: new Map(), firstCall: [], nextCall: [] };
const callSeen = (k, n) => {
  const now = performance.now();
  const sent = hops.sentAt.get(k);
  if (sent === undefined) return;
  if (n === 0) hops.firstCall.push(now - sent);
  else hops.nextCall.push(now - (hops.lastCallAt.get(k) ?? now));
  hops.lastCallAt.set(k, now);
};

/** Waiters for runs by key: the apps call `done(k)` from the run's last step. */
const waiters = new Map();
const done = (k) => {
  const w = waiters.get(k);
  if (w) {
    waiters.delete(k);
    w();
  }
};

/**
 * Closed-loop runs with `clients` clients for DURATION_MS: `startRun(k)` starts one (sends its
 * event, or for Restate makes the whole request) and the run counts as done when its last step
 * reports `k`; a client starts its next run once both happened.
 */
async function runLoad(
  label,
  startRun,
  clients,
  procs,
  idleRate,
  durationMs = DURATION_MS,
  stepsPerRun = STEPS,
) {
  const latencies = [];
  let failed = 0;
  let seq = 0;
  hops.sentAt.clear();
  hops.lastCallAt.clear();
  hops.firstCall = [];
  hops.nextCall = [];
  const cpu0 = cpuSeconds(procs);
  const sleeps0 = sleepCounts(procs);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() - t0 < durationMs) {
        const k = `${label}-${clients}-${seq++}`;
        const finished = new Promise((resolve) => waiters.set(k, () => resolve(performance.now())));
        const start = performance.now();
        hops.sentAt.set(k, start);
        try {
          await startRun(k);
        } catch (err) {
          // A refused or failed start counts as a failed run; the scenario goes on.
          process.stderr.write(`bench: a run of ${label} failed to start: ${err.message}\n`);
          waiters.delete(k);
          failed++;
          continue;
        }
        const doneAt = await Promise.race([finished, sleep(60_000).then(() => null)]);
        if (doneAt !== null) latencies.push(doneAt - start);
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
  const slept = diff(sleeps0, sleepCounts(procs));
  const window = elapsed + 1;
  const steps = latencies.length * stepsPerRun;
  const perStepMs = {};
  let total = 0;
  for (const [name, s] of Object.entries(used)) {
    const busy = Math.max(0, s - (idleRate.cpu[name] ?? 0) * window);
    perStepMs[name] = steps > 0 ? round((busy / steps) * 1000, 3) : 0;
    total += busy;
  }
  const sleepsPerRun = {};
  let sleeps = 0;
  for (const [name, n] of Object.entries(slept)) {
    const woken = Math.max(0, n - (idleRate.sleeps[name] ?? 0) * window);
    sleepsPerRun[name] = latencies.length > 0 ? round(woken / latencies.length, 1) : 0;
    sleeps += woken;
  }
  latencies.sort((a, b) => a - b);
  return {
    scenario: `runs (${label})`,
    concurrency: clients,
    stepsPerRun,
    runsPerSec: round(latencies.length / elapsed),
    p50Ms: round(pct(latencies, 0.5)),
    p99Ms: round(pct(latencies, 0.99)),
    failed,
    engineCpuPerStepMs: steps > 0 ? round((total / steps) * 1000, 3) : 0,
    perProcessMs: perStepMs,
    engineSleepsPerRun: latencies.length > 0 ? round(sleeps / latencies.length, 1) : 0,
    sleepsPerRun,
    // Only the minimal app reports its calls.
    ...(hops.firstCall.length > 0
      ? {
          eventToFirstCallP50Ms: round(median(hops.firstCall)),
          eventToFirstCallP99Ms: round(percentile(hops.firstCall, 0.99)),
          answerToNextCallP50Ms: round(median(hops.nextCall)),
          answerToNextCallP99Ms: round(percentile(hops.nextCall, 0.99)),
        }
      : {}),
  };
}

/**
 * Runs a scenario `--repeat` times: the row of the median run (by runs/s), with the spread of the
 * runs/s and CPU figures over all of them, so a before/after comparison can tell a change from
 * this machine's noise (a 2-core VM moved the same code's figures 2× between runs).
 */
async function repeated(scenario) {
  if (REPEAT === 1) return scenario();
  const rows = [];
  for (let i = 0; i < REPEAT; i++) rows.push(await scenario());
  const byRate = [...rows].sort((a, b) => a.runsPerSec - b.runsPerSec);
  const range = (key) => {
    const values = rows.map((r) => r[key]).sort((a, b) => a - b);
    return [values[0], values[values.length - 1]];
  };
  return {
    ...byRate[Math.floor((byRate.length - 1) / 2)],
    repeats: REPEAT,
    runsPerSecRange: range("runsPerSec"),
    p50MsRange: range("p50Ms"),
    engineCpuPerStepMsRange: range("engineCpuPerStepMs"),
  };
}

const percentile = (values, p) =>
  pct(
    [...values].sort((a, b) => a - b),
    p,
  );
const median = (values) => percentile(values, 0.5);

/** The same closed-loop runs against Restate (loadtest/restate.mjs), its server's CPU counted. */
async function restateRuns() {
  const { startRestate, SERVER_VERSION } = await import("./restate.mjs");
  const restate = await startRestate({ onDone: done });
  const rows = [];
  try {
    const procs = new Map([["restate-server", [restate.pid]]]);
    const label = `Restate ${SERVER_VERSION}`;
    await runLoad("restate warm-up", (k) => restate.run(k), 16, procs, NO_IDLE, WARM_UP_MS);
    const idleRate = await idleRates(procs);
    for (const c of CONCURRENCY) rows.push(await runLoad(label, (k) => restate.run(k), c, procs, idleRate));
  } finally {
    await restate.close();
  }
  return rows;
}

/**
 * Ingest: autocannon's `POST /e/<key>` for DURATION_MS, and the engine's CPU per event (the runner
 * consumes every event, so its matching is counted; the window ends a second after the load, so
 * the consumers' tail is in). The load generator's own CPU (this process) is reported apart.
 */
async function ingest(connections, procs, idleRate) {
  const cpu0 = cpuSeconds(procs);
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await autocannon({
    url: `${BASE}/e/${EVENT_KEY}`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "bench/ingest", data: { n: 1 } }),
    connections,
    duration: DURATION_MS / 1000,
  });
  const self = process.cpuUsage(self0);
  const elapsed = (performance.now() - t0) / 1000;
  await sleep(1_000);
  const used = diff(cpu0, cpuSeconds(procs));
  const events = result.requests.total - result.non2xx - result.errors;
  const perEventUs = {};
  let total = 0;
  for (const [name, s] of Object.entries(used)) {
    const busy = Math.max(0, s - (idleRate.cpu[name] ?? 0) * (elapsed + 1));
    perEventUs[name] = events > 0 ? round((busy / events) * 1e6) : 0;
    total += busy;
  }
  return {
    scenario: "ingest",
    concurrency: connections,
    eventsPerSec: round(events / elapsed),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.non2xx,
    engineCpuPerEventUs: events > 0 ? round((total / events) * 1e6) : 0,
    perProcessUs: perEventUs,
    loadGeneratorCpuPerEventUs: events > 0 ? round(((self.user + self.system) / events) * 1) : 0,
  };
}

async function main() {
  try {
    await fetch(BASE);
  } catch {
    throw new Error(`no Stepline at ${BASE}: start one with "npm start -- --dev" (or pass --url)`);
  }
  const procs = engineProcesses(args.profile, args["redis-port"]);
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

  const minimal = await startMinimalApp({
    appId: "bench-min",
    steps: MIN_STEPS,
    onCall: callSeen,
    onDone: done,
  });
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

  const rows = [];
  const print = (row) => {
    rows.push(row);
    process.stdout.write(`${JSON.stringify(row)}\n`);
  };
  // Warm-up: JIT, connections, scripts; then more rounds until Kafka's JIT compiler is quiet.
  await runLoad("warm-up", (k) => send("bench-min/run", { k }), 16, procs, NO_IDLE, WARM_UP_MS, MIN_STEPS);
  process.stdout.write(`${JSON.stringify({ warmUp: await warmUntilJitSettles(procs) })}\n`);
  // What a message between processes costs this machine (the engine is idle meanwhile).
  const wakeUps = await probeWakeUps();
  process.stdout.write(`${JSON.stringify({ probe: "wake-ups", ...wakeUps })}\n`);
  // The engine's idle CPU rate once warm, subtracted from each scenario's window.
  const idleRate = await idleRates(procs);
  if (wanted("ingest")) print(await ingest(Number(args.connections), procs, idleRate));
  const ceilings = new Map();
  for (const [label, event, steps] of [
    ["minimal app", "bench-min/run", MIN_STEPS],
    ["SDK v4 app", "bench-sdk/run", STEPS],
    ["SDK v4 app, checkpointing off", "bench-sdk1/run", STEPS],
  ]) {
    if (!wanted(label)) continue;
    // The warm-up above took the minimal app's path only: an SDK scenario's own code (the SDK here,
    // checkpoints in the engine) would otherwise be measured cold against a ceiling measured warm.
    if (event !== "bench-min/run")
      await runLoad(
        `${label} warm-up`,
        (k) => send(event, { k }),
        16,
        procs,
        NO_IDLE,
        SCENARIO_WARM_UP_MS,
        steps,
      );
    for (const c of CONCURRENCY)
      print(
        await repeated(() =>
          runLoad(label, (k) => send(event, { k }), c, procs, idleRate, DURATION_MS, steps),
        ),
      );
    if (label === "SDK v4 app") {
      // The same app code with the engine taken out, right after: the ceiling the target is against.
      const nullEngine = await startNullEngine();
      const alone = await startSdkApp({ appId: "bench-sdk-alone", baseUrl: nullEngine.url });
      const aloneApp = { ...alone, event: "bench-sdk-alone/run" };
      await sdkCeiling(aloneApp, 16, SCENARIO_WARM_UP_MS);
      for (const c of CONCURRENCY) {
        const { latencies, failed, elapsedS } = await sdkCeiling(aloneApp, c, DURATION_MS);
        const row = {
          scenario: "runs (SDK v4 app alone: its ceiling)",
          concurrency: c,
          runsPerSec: round(latencies.length / elapsedS),
          p50Ms: round(pct(latencies, 0.5)),
          p99Ms: round(pct(latencies, 0.99)),
          failed,
        };
        ceilings.set(c, row.runsPerSec);
        print(row);
      }
      await alone.close();
      await nullEngine.close();
    }
  }
  await minimal.close();
  await sdk.close();
  await sdkOneStep.close();
  if (args.restate) for (const row of await restateRuns()) print(row);

  process.stdout.write(
    "\n| scenario | clients | events/s or runs/s | p50 ms | p99 ms | engine CPU ms/step (ingest: µs/event) | biggest | engine sleeps/run |\n",
  );
  process.stdout.write("|---|---|---|---|---|---|---|---|\n");
  const biggest = (perProcess) =>
    Object.entries(perProcess ?? {})
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([n, v]) => `${n} ${v}`)
      .join(", ");
  for (const r of rows) {
    const spread = (value, range) => (range ? `${value} (${range[0]}–${range[1]})` : `${value ?? ""}`);
    const rate = r.eventsPerSec ?? spread(r.runsPerSec, r.runsPerSecRange);
    const cpu = r.engineCpuPerEventUs ?? spread(r.engineCpuPerStepMs, r.engineCpuPerStepMsRange);
    process.stdout.write(
      `| ${r.scenario} | ${r.concurrency} | ${rate} | ${spread(r.p50Ms, r.p50MsRange)} | ${r.p99Ms} | ${cpu} | ${biggest(r.perProcessMs ?? r.perProcessUs)} | ${r.engineSleepsPerRun ?? ""} |\n`,
    );
  }
  process.stdout.write(describeWakeUps(wakeUps));
  for (const r of rows.filter((row) => row.scenario === "ingest")) {
    process.stdout.write(
      `ingest: the load generator (autocannon, in this process) used ${r.loadGeneratorCpuPerEventUs} µs of CPU per event, on the same cores\n`,
    );
  }
  for (const r of rows.filter((row) => row.eventToFirstCallP50Ms !== undefined && row.concurrency === 1)) {
    process.stdout.write(
      `minimal app, 1 client: event sent -> first call reaches the app, median ${r.eventToFirstCallP50Ms} ms (p99 ${r.eventToFirstCallP99Ms}); one step's answer -> the next call, median ${r.answerToNextCallP50Ms} ms (p99 ${r.answerToNextCallP99Ms})\n`,
    );
  }
  for (const r of rows.filter((row) => row.scenario.startsWith("runs (Restate"))) {
    const ours = rows.find(
      (row) => row.scenario === "runs (minimal app)" && row.concurrency === r.concurrency,
    );
    // Runs of other lengths (--steps) are not the same work: no comparison then.
    if (ours && ours.stepsPerRun === r.stepsPerRun && r.runsPerSec > 0 && r.engineCpuPerStepMs > 0)
      process.stdout.write(
        `minimal app vs Restate, ${r.concurrency} clients: ${round(ours.runsPerSec / r.runsPerSec, 2)}× the runs/s, ${round(ours.engineCpuPerStepMs / r.engineCpuPerStepMs, 2)}× the engine CPU per step\n`,
      );
  }
  for (const r of rows.filter((row) => row.scenario === "runs (SDK v4 app)")) {
    const ceiling = ceilings.get(r.concurrency);
    if (ceiling)
      process.stdout.write(
        `SDK v4 app, ${r.concurrency} clients: ${r.runsPerSec} runs/s through Stepline = ${round((100 * r.runsPerSec) / ceiling)} % of the app's own ceiling (${ceiling} runs/s)\n`,
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
