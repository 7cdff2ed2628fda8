// The native infrastructure: Kafka, Redis and ClickHouse on loopback, data under .stepline/<profile>/,
// run as children of the launcher. Also a command: node scripts/infra.mjs up|down|status --profile dev|test
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { prepareClickHouse, waitForClickHouse } from "./infra/clickhouse.mjs";
import { ensureInstalled } from "./infra/install.mjs";
import { ensureTopics, prepareKafka, waitForKafka } from "./infra/kafka.mjs";
import { prepareRedis, waitForRedis } from "./infra/redis.mjs";
import {
  isPortOpen,
  onShutdown,
  phase,
  STATE_DIR,
  seconds,
  shutdown,
  startProcess,
  UserError,
} from "./lib.mjs";

export { ensureInstalled, ensureTopics };

/** Ports per profile; dev and test differ everywhere so both can run at once. */
export const PROFILES = {
  dev: { kafka: 9092, kafkaController: 9093, redis: 6379, clickhouseHttp: 8123, clickhouseTcp: 9000 },
  test: { kafka: 19092, kafkaController: 19093, redis: 16379, clickhouseHttp: 18123, clickhouseTcp: 19000 },
};

const READY_TIMEOUT_MS = 90_000;

/** The three components: their ports, how to prepare and probe them, how long a clean stop may take. */
function components(ports) {
  return [
    {
      name: "redis",
      label: "Redis",
      ports: [ports.redis],
      stopTimeoutMs: 10_000,
      prepare: (dir) => prepareRedis({ dir, port: ports.redis }),
      wait: (o) => waitForRedis({ port: ports.redis, ...o }),
    },
    {
      name: "clickhouse",
      label: "ClickHouse",
      ports: [ports.clickhouseHttp, ports.clickhouseTcp],
      stopTimeoutMs: 15_000,
      prepare: (dir) =>
        prepareClickHouse({ dir, httpPort: ports.clickhouseHttp, tcpPort: ports.clickhouseTcp }),
      wait: (o) => waitForClickHouse({ httpPort: ports.clickhouseHttp, ...o }),
    },
    {
      name: "kafka",
      label: "Kafka",
      ports: [ports.kafka, ports.kafkaController],
      // A controlled shutdown of the combined broker+controller takes ~5-10 s.
      stopTimeoutMs: 30_000,
      prepare: (dir) => prepareKafka({ dir, port: ports.kafka, controllerPort: ports.kafkaController }),
      wait: (o) => waitForKafka({ port: ports.kafka, ...o }),
    },
  ];
}

function profileDir(profile) {
  return path.join(STATE_DIR, profile);
}

function pidFile(profile, name) {
  return path.join(profileDir(profile), "pids", `${name}.pid`);
}

/** A process's start time in clock ticks since boot: with the pid, it identifies the process for good. */
function startTime(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may itself contain spaces.
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

function writePidFile(profile, name, pid) {
  fs.mkdirSync(path.dirname(pidFile(profile, name)), { recursive: true });
  fs.writeFileSync(pidFile(profile, name), `${pid} ${startTime(pid)}\n`);
}

/** The pid of a still-running process we started for this profile earlier, or null. */
function ownLiveProcess(profile, name) {
  try {
    const [pid, started] = fs.readFileSync(pidFile(profile, name), "utf8").trim().split(" ");
    // A recycled pid has another start time; Redis rewrites its argv, so that cannot be checked instead.
    return startTime(pid) === started ? Number(pid) : null;
  } catch {
    return null;
  }
}

async function checkPortsFree(profile, comp) {
  const pid = ownLiveProcess(profile, comp.name);
  if (pid) {
    throw new UserError(
      `${comp.label} of profile "${profile}" is still running from a previous run (pid ${pid}). ` +
        `Stop it with \`node scripts/infra.mjs down --profile ${profile}\` (or kill ${pid}), then retry.`,
    );
  }
  for (const port of comp.ports) {
    if (await isPortOpen(port)) {
      throw new UserError(
        `Port ${port} (${comp.label}, profile "${profile}") is already in use by another program. ` +
          "Stop that program (a system service? see `ss -ltnp`), then retry.",
      );
    }
  }
}

function tail(file, lines = 20) {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * Starts Kafka, Redis and ClickHouse for a profile and waits until each answers.
 * Returns their addresses, stop() (idempotent), and `crashed`, a promise that resolves with
 * { name, code, signal } if a component exits before stop() was called.
 */
export async function startInfra({ profile = "dev" } = {}) {
  const ports = PROFILES[profile];
  if (!ports)
    throw new UserError(`unknown profile "${profile}" (expected ${Object.keys(PROFILES).join(" or ")})`);
  const dir = profileDir(profile);
  const comps = components(ports);
  for (const comp of comps) await checkPortsFree(profile, comp);

  const launches = [];
  for (const comp of comps) launches.push({ comp, launch: await comp.prepare(path.join(dir, comp.name)) });

  let stopping = false;
  let reportCrash;
  const crashed = new Promise((resolve) => {
    reportCrash = resolve;
  });
  const procs = launches.map(({ comp, launch }) => {
    const logFile = path.join(dir, "logs", `${comp.name}.log`);
    const proc = startProcess({ name: comp.label, ...launch, logFile });
    writePidFile(profile, comp.name, proc.pid);
    proc.exited.then(({ code, signal }) => {
      fs.rmSync(pidFile(profile, comp.name), { force: true });
      if (!stopping) {
        console.error(
          `==> ${comp.label} exited unexpectedly (code ${code}, signal ${signal}); log: ${logFile}`,
        );
        reportCrash({ name: comp.name, code, signal });
      }
    });
    return { comp, proc, logFile };
  });

  let stopped = null;
  const stop = () => {
    stopping = true;
    stopped ??= (async () => {
      phase(`stopping infrastructure (${profile})…`);
      const start = performance.now();
      await Promise.all(procs.map(({ comp, proc }) => proc.stop(comp.stopTimeoutMs)));
      console.log(`    infrastructure stopped in ${seconds(performance.now() - start)}`);
    })();
    return stopped;
  };
  const unregister = onShutdown(stop);

  const started = performance.now();
  const results = await Promise.allSettled(
    procs.map(async ({ comp, proc }) => {
      await comp.wait({ timeoutMs: READY_TIMEOUT_MS, isAborted: proc.hasExited });
      const where = comp.ports.map((p) => `127.0.0.1:${p}`).join(", ");
      console.log(`    ${comp.label} ready on ${where} (${seconds(performance.now() - started)})`);
    }),
  );
  const failed = results.flatMap((r, i) =>
    r.status === "rejected" ? [{ ...procs[i], error: r.reason }] : [],
  );
  if (failed.length > 0) {
    await stop();
    unregister();
    for (const { comp, logFile, error } of failed) {
      console.error(
        `==> ${comp.label} failed: ${error.message}\n--- last lines of ${logFile}:\n${tail(logFile)}`,
      );
    }
    throw new UserError(
      `infrastructure (${profile}) did not start: ${failed.map((f) => f.comp.label).join(", ")}`,
    );
  }

  return {
    kafkaBrokers: `127.0.0.1:${ports.kafka}`,
    redisUrl: `redis://127.0.0.1:${ports.redis}`,
    clickhouseUrl: `http://127.0.0.1:${ports.clickhouseHttp}`,
    crashed,
    async stop() {
      await stop();
      unregister();
    },
  };
}

/** Stops a profile started by another launcher (e.g. a stray `infra.mjs up`), via its pid files. */
async function down(profile) {
  const comps = components(PROFILES[profile]);
  await Promise.all(
    comps.map(async (comp) => {
      const pid = ownLiveProcess(profile, comp.name);
      if (!pid) return console.log(`    ${comp.label}: not running`);
      process.kill(-pid, "SIGTERM");
      const deadline = Date.now() + comp.stopTimeoutMs;
      while (ownLiveProcess(profile, comp.name) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
      }
      if (ownLiveProcess(profile, comp.name)) process.kill(-pid, "SIGKILL");
      fs.rmSync(pidFile(profile, comp.name), { force: true });
      console.log(`    ${comp.label}: stopped (pid ${pid})`);
    }),
  );
}

async function status(profile) {
  for (const comp of components(PROFILES[profile])) {
    const pid = ownLiveProcess(profile, comp.name);
    const open = await Promise.all(comp.ports.map((p) => isPortOpen(p)));
    const ports = comp.ports.map((p, i) => `${p} ${open[i] ? "open" : "closed"}`).join(", ");
    console.log(
      `    ${comp.label.padEnd(10)} ${pid ? `running (pid ${pid})` : "not running"}; ports ${ports}`,
    );
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    options: { profile: { type: "string", default: "dev" } },
    allowPositionals: true,
  });
  const [command] = positionals;
  const profile = values.profile;
  if (!PROFILES[profile]) throw new UserError(`unknown profile "${profile}"`);
  if (command === "down") return down(profile);
  if (command === "status") return status(profile);
  if (command !== "up")
    throw new UserError("usage: node scripts/infra.mjs up|down|status [--profile dev|test]");

  await ensureInstalled();
  phase(`starting infrastructure (${profile})…`);
  const infra = await startInfra({ profile });
  await ensureTopics(infra.kafkaBrokers, "");
  console.log(
    `==> infrastructure (${profile}) is up: Kafka ${infra.kafkaBrokers}, Redis ${infra.redisUrl}, ` +
      `ClickHouse ${infra.clickhouseUrl}. Ctrl-C stops it.`,
  );
  await infra.crashed;
  await infra.stop();
  process.exit(1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err instanceof UserError ? `error: ${err.message}` : err);
    shutdown(1);
  });
}
