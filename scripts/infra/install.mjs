// Installs what the native infrastructure needs and is missing; every step is skipped when its result
// is already there, so a second start costs only a few file checks.
import { execFileSync } from "node:child_process";
import { phase, run, UserError, which } from "../lib.mjs";
import { findClickHouse } from "./clickhouse.mjs";
import { installKafkaJars } from "./kafka.mjs";

// Messages apt-get prints when its package lists are missing or stale; only then is an update worth it.
const STALE_LISTS = /Unable to locate package|has no installation candidate|Failed to fetch|404\s+Not Found/;

const FALLBACK = "or run everything in containers with `docker compose up` instead.";

function redisMajor(bin) {
  const out = execFileSync(bin, ["--version"], { encoding: "utf8" });
  return Number(/v=(\d+)/.exec(out)?.[1] ?? 0);
}

async function aptInstall(packages) {
  const args = ["install", "-y", "--no-install-recommends", ...packages];
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  let result = await run("apt-get", args, { env, output: "tee" });
  if (result.code !== 0 && STALE_LISTS.test(result.output)) {
    phase("refreshing package lists (apt-get update)…");
    await run("apt-get", ["update"], { env });
    result = await run("apt-get", args, { env, output: "tee" });
  }
  return result.code === 0;
}

/**
 * Makes sure Redis (>= 7), ClickHouse, Java, Maven and the Kafka jars are present, installing Debian
 * packages with apt-get when running as root. Throws a UserError naming exactly what is missing
 * when it cannot install it itself.
 */
export async function ensureInstalled() {
  const redis = which("redis-server");
  if (redis && redisMajor(redis) < 7) {
    throw new UserError(`${redis} is older than Redis 7; install redis-server >= 7, ${FALLBACK}`);
  }
  const missing = [];
  if (!redis) missing.push("redis-server");
  if (!findClickHouse()) missing.push("clickhouse-server");

  const canApt = process.getuid?.() === 0 && which("apt-get") !== null;
  if (missing.length > 0 && !canApt) {
    throw new UserError(
      `Missing ${missing.join(", ")}. Install them with your package manager ` +
        `(e.g. sudo apt-get install -y ${missing.join(" ")}; Redis must be >= 7), ${FALLBACK}`,
    );
  }
  for (const pkg of missing) {
    phase(`installing ${pkg === "redis-server" ? "Redis" : "ClickHouse"} (apt-get)…`);
    if (!(await aptInstall([pkg]))) throw new UserError(`apt-get install ${pkg} failed (see above)`);
  }
  // docker-compose only validates docker-compose.yml in checks; the launcher works without it.
  if (canApt && !which("docker-compose")) {
    phase("installing docker-compose (apt-get, optional)…");
    if (!(await aptInstall(["docker-compose"]))) phase("docker-compose could not be installed; continuing");
  }

  const javaPackages = { java: "openjdk-17-jre-headless", mvn: "maven" };
  const noJava = ["java", "mvn"].filter((cmd) => !which(cmd));
  if (noJava.length > 0 && canApt) {
    phase(`installing ${noJava.join(" and ")} for Kafka (apt-get)…`);
    const packages = noJava.map((cmd) => javaPackages[cmd]);
    if (!(await aptInstall(packages)))
      throw new UserError(`apt-get install ${packages.join(" ")} failed (see above)`);
    noJava.splice(0, noJava.length, ...noJava.filter((cmd) => !which(cmd)));
  }
  if (noJava.length > 0) {
    throw new UserError(
      `Kafka needs ${noJava.join(" and ")}: install Java 17 and Maven ` +
        `(e.g. sudo apt-get install -y openjdk-17-jre-headless maven), ${FALLBACK}`,
    );
  }
  await installKafkaJars();
}

/**
 * Debian's Chromium, which the dashboard's browser tests drive through playwright-core: installed
 * with apt-get when running as root, like the servers. Returns the browser's path.
 */
export async function ensureChromium() {
  const found = which("chromium");
  if (found) return found;
  const canApt = process.getuid?.() === 0 && which("apt-get") !== null;
  if (!canApt) {
    throw new UserError(
      "The dashboard's browser tests need Chromium: install it (e.g. sudo apt-get install -y chromium), " +
        "or set STEPLINE_TEST_CHROMIUM to a Chromium or Chrome binary.",
    );
  }
  phase("installing Chromium for the browser tests (apt-get)…");
  if (!(await aptInstall(["chromium"]))) throw new UserError("apt-get install chromium failed (see above)");
  const installed = which("chromium");
  if (!installed) throw new UserError("apt-get installed chromium, but no chromium binary is on PATH");
  return installed;
}
