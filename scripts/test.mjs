// `npm test [-- vitest args]`: dependencies, build, lint, boundary check, then the servers of the
// test profile and vitest against them. Exits non-zero if any phase failed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ensureBuilt, ensureNodeDeps } from "./deps.mjs";
import { ensureChromium } from "./infra/install.mjs";
import { ensureInstalled, startInfra } from "./infra.mjs";
import { onShutdown, ROOT, run, STATE_DIR, seconds, shutdown, timed, UserError } from "./lib.mjs";

const bin = (name) => path.join(ROOT, "node_modules", ".bin", name);
const REPORT = path.join(STATE_DIR, "test", "vitest-report.json");
const results = [];

/** Runs a phase, recording its outcome and time for the summary; a thrown error marks it failed. */
async function phase(label, fn) {
  const start = performance.now();
  let result;
  try {
    result = { ok: true, value: await timed(label, fn) };
  } catch (err) {
    console.error(err instanceof UserError ? `error: ${err.message}` : err);
    result = { ok: false };
  }
  results.push({ label, ok: result.ok, ms: performance.now() - start });
  return result;
}

async function check(cmd, args) {
  const { code } = await run(cmd, args);
  if (code !== 0) throw new UserError(`${path.basename(cmd)} ${args.join(" ")} failed (exit ${code})`);
}

/** Runs vitest in the foreground (it shares the terminal, so Ctrl-C reaches it directly). */
function vitest(args, env) {
  // The JSON report feeds the closing "N passed, N failed" line; the console keeps its own reporter.
  const ownReporter = args.some((a) => a.startsWith("--reporter"));
  const reporters = [...(ownReporter ? [] : ["--reporter=default"]), "--reporter=json"];
  const child = spawn(bin("vitest"), ["run", ...reporters, `--outputFile.json=${REPORT}`, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: "inherit",
  });
  const exited = new Promise((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0))),
  );
  // On SIGTERM to this launcher alone, vitest must stop too before the servers go away.
  const unregister = onShutdown(async () => {
    child.kill("SIGTERM");
    process.exitCode = (await exited) || 130;
  });
  return exited.finally(unregister);
}

function readReport() {
  try {
    return JSON.parse(fs.readFileSync(REPORT, "utf8"));
  } catch {
    return null;
  }
}

/** "N passed, N failed, N skipped" from vitest's JSON report; a file that failed outside its tests counts once. */
function testCounts(report) {
  const failed = report.testResults.reduce((sum, file) => {
    const tests = file.assertionResults.filter((a) => a.status === "failed").length;
    return sum + (tests === 0 && file.status === "failed" ? 1 : tests);
  }, 0);
  const skipped = report.numPendingTests + report.numTodoTests;
  return `${report.numPassedTests} passed, ${failed} failed, ${skipped} skipped`;
}

/**
 * One line per failed or skipped test (and per file that failed outside its tests), with the first
 * line of its error: CI keeps only the tail of the output, so the summary must name what broke.
 */
function testProblems(report) {
  const firstLine = (text) =>
    String(text ?? "")
      .trim()
      .split("\n")[0]
      .slice(0, 300);
  const lines = [];
  for (const file of report.testResults) {
    const where = path.relative(ROOT, file.name);
    const bad = file.assertionResults.filter((a) => a.status !== "passed");
    for (const a of bad)
      lines.push(`${a.status.padEnd(7)} ${where} > ${a.fullName}: ${firstLine(a.failureMessages?.[0])}`);
    if (file.status === "failed" && !bad.some((a) => a.status === "failed"))
      lines.push(`failed  ${where}: ${firstLine(file.message)}`);
  }
  return lines;
}

/** Regenerates packages/proto and fails if that changed anything: a proto edited without `npm run gen`. */
async function checkContracts() {
  await check(process.execPath, [path.join(ROOT, "scripts", "gen-proto.mjs")]);
  const { code, output } = await run("git", ["status", "--porcelain", "--", "packages/proto/src"], {
    output: "capture",
  });
  if (code !== 0) throw new UserError("git status failed; is this a git checkout?");
  if (output.trim() !== "")
    throw new UserError(`generated code differs from proto/ (run npm run gen and commit):\n${output}`);
}

/** `docker-compose config` checks the compose file without a Docker engine. */
async function checkCompose() {
  await check("docker-compose", ["-f", path.join(ROOT, "docker-compose.yml"), "config", "-q"]);
}

async function main() {
  fs.rmSync(REPORT, { force: true });
  if (!(await phase("Node dependencies", ensureNodeDeps)).ok) return finish();
  if (!(await phase("build (tsc -b, dashboard)", ensureBuilt)).ok) return finish();
  // Lint and boundaries do not stop the tests: one run shows every problem at once.
  await phase("lint (biome check)", () => check(bin("biome"), ["check", "."]));
  await phase("boundaries", () =>
    check(process.execPath, [path.join(ROOT, "scripts", "check-boundaries.mjs")]),
  );
  // tsc -b builds only shipped code; this covers every test and test helper too.
  await phase("type-check tests", () => check(bin("tsc"), ["-p", "tsconfig.tests.json"]));
  await phase("type-check load tests (k6)", () => check(bin("tsc"), ["-p", "loadtest/tsconfig.json"]));
  await phase("type-check the dashboard", () =>
    check(bin("tsc"), ["-p", "packages/dashboard/tsconfig.json"]),
  );
  await phase("contracts (buf lint, generated code current)", checkContracts);
  if (!(await phase("install infrastructure", ensureInstalled)).ok) return finish();
  const chromium = await phase("install Chromium (browser tests)", async () =>
    process.env.STEPLINE_TEST_CHROMIUM ? process.env.STEPLINE_TEST_CHROMIUM : ensureChromium(),
  );
  if (!chromium.ok) return finish();
  await phase("docker-compose.yml valid", checkCompose);
  const { ok, value: infra } = await phase("start infrastructure (test)", () =>
    startInfra({ profile: "test" }),
  );
  if (!ok) return finish();

  let vitestExit = 0;
  await phase("tests (vitest)", async () => {
    vitestExit = await vitest(process.argv.slice(2), {
      STEPLINE_TEST_KAFKA_BROKERS: infra.kafkaBrokers,
      STEPLINE_TEST_REDIS_URL: infra.redisUrl,
      STEPLINE_TEST_CLICKHOUSE_URL: infra.clickhouseUrl,
      STEPLINE_TEST_CHROMIUM: chromium.value,
    });
    if (vitestExit !== 0) throw new UserError(`vitest exited with ${vitestExit}`);
  });
  await phase("stop infrastructure", () => infra.stop());
  return finish(vitestExit);
}

/** Prints each phase's outcome and time, then exits: vitest's code, or 1 if another phase failed. */
function finish(vitestExit = 0) {
  console.log("\n==> summary");
  for (const r of results)
    console.log(`    ${r.ok ? "ok  " : "FAIL"} ${r.label.padEnd(28)} ${seconds(r.ms)}`);
  const report = readReport();
  if (report) {
    for (const line of testProblems(report)) console.log(`    ${line}`);
    console.log(`tests: ${testCounts(report)}`);
  }
  const failed = results.some((r) => !r.ok);
  return shutdown(vitestExit || (failed ? 1 : 0));
}

main().catch((err) => {
  console.error(err);
  shutdown(1);
});
