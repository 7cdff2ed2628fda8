// The engine's CPU as `npm run bench` counts it: its processes found in /proc (every service,
// Kafka, Redis and ClickHouse of a profile) and their CPU seconds from /proc/<pid>/stat, with
// Kafka's JIT compiler threads counted apart; and how often their threads went to sleep waiting
// (/proc/<pid>/task/*/status). See loadtest/README.md, "engine CPU ms/step" and "sleeps per run".
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** The engine's processes, by name (every service, Kafka, Redis and ClickHouse of the profile). */
export function engineProcesses(profile, redisPort) {
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
    const profileDir = `.stepline/${profile}/`;
    let name = service;
    if (!name && cmd.includes("kafka.Kafka") && cmd.includes(profileDir)) name = "kafka";
    if (!name && /clickhouse/.test(cmd.split(" ")[0] ?? "") && cmd.includes(profileDir)) name = "clickhouse";
    if (!name && /redis-server/.test(cmd) && cmd.includes(`:${redisPort}`)) name = "redis";
    if (!name) continue;
    const list = out.get(name) ?? [];
    list.push(Number(pid));
    out.set(name, list);
  }
  return out;
}

/** utime + stime of a process (or of one thread: /proc/<pid>/task/<tid>/stat), in ticks; 0 once gone. */
function ticksOf(statPath) {
  try {
    // Fields after the command name (which may hold spaces) start at ") ".
    const stat = readFileSync(statPath, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** The thread ids of a process (none once it is gone). */
function threadsOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
}

/**
 * Ticks of a JVM's JIT compiler threads (named "C1 CompilerThre…", "C2 CompilerThre…"). A freshly
 * started Kafka compiles for minutes on a slow machine, and that one-time cost would otherwise read
 * as Kafka's cost per request.
 */
function jitTicks(pid) {
  let ticks = 0;
  for (const tid of threadsOf(pid)) {
    let comm = "";
    try {
      comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8");
    } catch {}
    if (/^C[12] CompilerThre/.test(comm)) ticks += ticksOf(`/proc/${pid}/task/${tid}/stat`);
  }
  return ticks;
}

/**
 * CPU seconds used so far by each process group, with Kafka's JIT compiler threads apart as
 * "kafka-jit" (still engine CPU, counted in the totals, but shown on its own).
 */
export function cpuSeconds(procs) {
  const out = {};
  for (const [name, pids] of procs) {
    let ticks = 0;
    let jit = 0;
    for (const pid of pids) {
      ticks += ticksOf(`/proc/${pid}/stat`);
      if (name === "kafka") jit += jitTicks(pid);
    }
    out[name] = (ticks - jit) / CLK_TCK;
    if (name === "kafka") out["kafka-jit"] = jit / CLK_TCK;
  }
  return out;
}

/**
 * Voluntary context switches so far of each process group, all threads summed: each is a thread
 * that ran out of work and slept until a message (or a timer) woke it.
 */
export function sleepCounts(procs) {
  const out = {};
  for (const [name, pids] of procs) {
    let n = 0;
    for (const pid of pids) {
      for (const tid of threadsOf(pid)) {
        try {
          const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
          n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
        } catch {}
      }
    }
    out[name] = n;
  }
  return out;
}

export const diff = (a, b) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * What each process group uses per second while nothing is sent (measured over 2 s): CPU seconds
 * (`cpu`) and sleeps (`sleeps`, timers and heartbeats).
 */
export async function idleRates(procs) {
  // The last runs' ends (history, end events) settle first.
  await sleep(1_000);
  const cpu0 = cpuSeconds(procs);
  const sleeps0 = sleepCounts(procs);
  await sleep(2_000);
  const perSecond = (d) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v / 2]));
  return {
    cpu: perSecond(diff(cpu0, cpuSeconds(procs))),
    sleeps: perSecond(diff(sleeps0, sleepCounts(procs))),
  };
}
