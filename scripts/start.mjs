// `npm start` (`npm start -- --dev` for dev mode): installs and builds what is missing, starts Kafka,
// Redis and ClickHouse (profile dev), then the five services, and stops it all in order on Ctrl-C.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { ensureBuilt, ensureNodeDeps } from "./deps.mjs";
import { ensureInstalled, ensureTopics, startInfra } from "./infra.mjs";
import { onShutdown, phase, STATE_DIR, seconds, shutdown, UserError } from "./lib.mjs";
import { launchService, SERVICES, serviceEnv, waitReady } from "./services.mjs";

const READY_TIMEOUT_MS = 60_000;
// Services finish or release in-flight work on SIGTERM; past this they are killed.
const STOP_TIMEOUT_MS = 15_000;

/**
 * The internal gRPC token (STEPLINE_INTERNAL_TOKEN): the environment's, or one made once and kept
 * in .stepline/internal-token (readable by this user only), where the CLI finds it too.
 */
function internalToken() {
  if (process.env.STEPLINE_INTERNAL_TOKEN) return process.env.STEPLINE_INTERNAL_TOKEN;
  const file = path.join(STATE_DIR, "internal-token");
  if (!existsSync(file)) {
    mkdirSync(STATE_DIR, { recursive: true });
    writeFileSync(file, randomBytes(32).toString("hex"), { mode: 0o600 });
  }
  return readFileSync(file, "utf8").trim();
}

function startServices(infra, dev, cpuProfDir) {
  const envs = serviceEnv(infra, { dev, internalToken: internalToken() });
  const width = Math.max(...SERVICES.map((s) => s.name.length));
  // V8 CPU profiles (written when a service stops), for finding where a step's CPU goes.
  const nodeArgs = cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] : [];
  const running = SERVICES.map((spec) => ({
    spec,
    proc: launchService(spec.name, envs[spec.name], width, nodeArgs),
  }));
  let stopping = false;
  onShutdown(async () => {
    stopping = true;
    phase("stopping services…");
    const start = performance.now();
    await Promise.all(running.map(({ proc }) => proc.stop(STOP_TIMEOUT_MS)));
    console.log(`    services stopped in ${seconds(performance.now() - start)}`);
  });
  // Resolves with (and reports) the first service that exits on its own.
  const died = Promise.race(
    running.map(({ proc }) => proc.exited.then((result) => ({ proc, ...result }))),
  ).then((death) => {
    if (stopping) return new Promise(() => {});
    reportDeath(death);
    return death;
  });
  return { running, died };
}

function reportDeath({ proc, code, signal }) {
  console.error(`==> ${proc.name} exited (code ${code}, signal ${signal}); its last output:`);
  for (const line of proc.lastLines()) console.error(`    ${line}`);
}

async function waitAllReady(running) {
  const start = performance.now();
  await Promise.all(
    running.map(async ({ spec, proc }) => {
      try {
        await waitReady(proc, spec.adminPort, READY_TIMEOUT_MS);
      } catch (err) {
        // An exit is already reported by startServices; a service that is up but never ready is shown here.
        if (!proc.hasExited()) {
          console.error(`==> ${spec.name} is not ready; its last output:`);
          for (const line of proc.lastLines()) console.error(`    ${line}`);
        }
        throw err;
      }
      console.log(`    ${spec.name} ready (${seconds(performance.now() - start)})`);
    }),
  );
}

function printBanner(infra, running, dev) {
  const http = `http://127.0.0.1:${SERVICES.find((s) => s.name === "event-api").httpPort}`;
  const admin = running.map(({ spec }) => `${spec.name} :${spec.adminPort}`).join(", ");
  console.log(
    [
      `==> Stepline is up: event API ${http} (send events to /e/<key>), dashboard ${http}/`,
      `    mode             ${dev ? "dev (any event key is accepted)" : "production (event keys required)"}`,
      `    app sync         ${http}/fn/register`,
      `    admin ports      ${admin} (/healthz /readyz /metrics)`,
      `    Kafka            ${infra.kafkaBrokers}`,
      `    Redis            ${infra.redisUrl}`,
      `    ClickHouse       ${infra.clickhouseUrl}`,
      "    logs             .stepline/dev/logs/ (infrastructure); services print here",
      "    Ctrl-C stops everything.",
    ].join("\n"),
  );
}

async function main() {
  const { values } = parseArgs({
    options: { dev: { type: "boolean", default: false }, "cpu-prof": { type: "string" } },
  });
  await ensureNodeDeps();
  await ensureBuilt();
  await ensureInstalled();
  phase("starting infrastructure (dev)…");
  const infra = await startInfra({ profile: "dev" });
  await ensureTopics(infra.kafkaBrokers, "");

  phase("starting services…");
  const { running, died } = startServices(infra, values.dev, values["cpu-prof"]);
  let ready = false;
  await Promise.race([
    waitAllReady(running),
    died.then((death) => {
      if (!ready) throw new UserError(`${death.proc.name} exited before it was ready`);
    }),
  ]);
  ready = true;
  printBanner(infra, running, values.dev);

  const crash = await Promise.race([
    died.then((death) => `${death.proc.name} died`),
    infra.crashed.then(({ name }) => `${name} died`),
  ]);
  console.error(`==> ${crash}: stopping everything`);
  await shutdown(1);
}

main().catch((err) => {
  console.error(err instanceof UserError ? `error: ${err.message}` : err);
  shutdown(1);
});
