// The Restate side of `npm run bench -- --restate`: Restate running the bench's 3-step workflow
// on this machine, so the bench can print it beside Stepline from the same run.
//
// startRestate() installs restate-server and the Node SDK on first use into .stepline/bench/restate/
// (git-ignored; kept out of package.json because the server binary alone is ~225 MB and `npm ci`
// runs on every CI), starts the server on free loopback ports with its data in a fresh folder,
// serves the workflow from this process with the SDK, registers it, and hands the bench `run(k)`
// (one run, awaited to its end), the server's `pid` (its CPU is read from /proc) and `close()`.
//
// The workflow is a Restate *Service* handler with three `ctx.run` steps. A Service is the fair
// match for one Stepline run: each call is a new durable invocation whose steps are journaled and
// retried, without what a Virtual Object adds (a per-key lock and state) or what a Workflow adds
// (once-per-key, its retained result and promises), which Stepline's run does not do either.
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttp2Server } from "node:http2";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
// The project's test helpers: ports drawn below the ephemeral range, and one polling loop.
import { freePort, waitFor } from "@stepline/internal/testing";

export const SERVER_VERSION = "1.7.12";
// The newest SDK line that the SDK's own compatibility table lists for server 1.7 (1.17.2's README
// stops at the 1.15-1.16 column). 1.14+ call Promise.withResolvers, which Node 20 lacks: see below.
export const SDK_VERSION = "1.16.9";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const BENCH_DIR = join(REPO, ".stepline", "bench");
const INSTALL_DIR = join(BENCH_DIR, "restate");
const SERVICE = "bench";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Installs the pinned server and SDK into INSTALL_DIR unless they are there already. */
function install() {
  const require = createRequire(join(INSTALL_DIR, "package.json"));
  const binPkg = `@restatedev/restate-server-${process.platform}-${process.arch}`;
  const version = (pkg) => {
    try {
      return JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")).version;
    } catch {
      return undefined;
    }
  };
  if (version(binPkg) !== SERVER_VERSION || version("@restatedev/restate-sdk") !== SDK_VERSION) {
    process.stderr.write(
      `restate: installing server ${SERVER_VERSION} and SDK ${SDK_VERSION} in ${INSTALL_DIR}\n`,
    );
    mkdirSync(INSTALL_DIR, { recursive: true });
    // Its own package.json, so npm does not climb to the repo's workspace root.
    writeFileSync(join(INSTALL_DIR, "package.json"), '{ "private": true }\n');
    // --ignore-scripts: the server package's only install script is an analytics ping (scarf).
    const pkgs = [`@restatedev/restate-server@${SERVER_VERSION}`, `@restatedev/restate-sdk@${SDK_VERSION}`];
    const flags = ["--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", INSTALL_DIR];
    execFileSync("npm", ["install", ...flags, ...pkgs], { stdio: ["ignore", "ignore", "inherit"] });
  }
  return {
    bin: require.resolve(`${binPkg}/bin/restate-server`),
    sdk: () => require("@restatedev/restate-sdk"),
  };
}

/**
 * Starts restate-server (installed on first use) on free loopback ports with a fresh data folder,
 * serves the 3-step workflow from this process (s3 calls `onDone(k)`), registers it and waits until
 * the ingress routes calls. Returns `{ pid, run(k), close() }`: the server's process id, one run
 * through the ingress awaited to its end (throws on a non-2xx answer), and a stop of both.
 */
export async function startRestate({ onDone }) {
  const { bin, sdk } = install();
  // Node 20 has no Promise.withResolvers (Node 22 does) and the SDK needs it: add the standard one.
  Promise.withResolvers ??= function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
  const restate = sdk();

  // The workflow, served over HTTP/2 (the SDK's bidirectional streaming mode, as Restate uses it).
  const service = restate.service({
    name: SERVICE,
    handlers: {
      run: async (ctx, input) => {
        const a = await ctx.run("s1", async () => 1);
        const b = await ctx.run("s2", async () => a + 1);
        return await ctx.run("s3", async () => {
          onDone(input.k);
          return b + 1;
        });
      },
      // No steps and no onDone: lets startRestate see the ingress route calls before the bench starts.
      ping: async () => "pong",
    },
  });
  // Only the SDK's warnings and errors, less the one about unsigned requests (loopback here).
  const logger = (meta, msg, ...rest) => {
    const line = [msg, ...rest].join(" ");
    if (meta.replaying || (meta.level !== "warn" && meta.level !== "error")) return;
    if (!line.startsWith("Accepting requests without validating"))
      process.stderr.write(`restate sdk: ${line}\n`);
  };
  const h2 = createHttp2Server(restate.createEndpointHandler({ services: [service], logger }));
  await new Promise((resolve) => h2.listen(0, "127.0.0.1", resolve));

  const [ingress, admin, fabric] = [await freePort(), await freePort(), await freePort()];
  mkdirSync(BENCH_DIR, { recursive: true });
  const dataDir = mkdtempSync(join(BENCH_DIR, "restate-run-"));
  const logFile = join(dataDir, "server.log");
  // TCP only (no unix sockets), loopback only, no telemetry, no web UI or metrics (not needed);
  // everything else (partitions, fsync, retention) is Restate's default, as a user would run it.
  const config = join(dataDir, "restate.toml");
  writeFileSync(
    config,
    `base-dir = "${dataDir}"
node-name = "bench"
listen-mode = "tcp"
bind-address = "127.0.0.1:${fabric}"
advertised-address = "http://127.0.0.1:${fabric}/"
disable-telemetry = true
disable-prometheus = true
log-format = "compact"
log-disable-ansi-codes = true
shutdown-timeout = "3s"
[admin]
bind-address = "127.0.0.1:${admin}"
disable-web-ui = true
[ingress]
bind-address = "127.0.0.1:${ingress}"
`,
  );
  // RESTATE_* variables in our environment would override the file: drop them.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RESTATE_")));
  const logFd = openSync(logFile, "a");
  const child = spawn(bin, ["--config-file", config, "--no-logo"], {
    cwd: dataDir,
    env,
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  let exitedWith;
  const exited = new Promise((resolve) => {
    const end = (why) => {
      exitedWith = why;
      resolve(why);
    };
    child.once("exit", (code, signal) => end(signal ?? code));
    child.once("error", (err) => end(err.message)); // e.g. could not spawn it
  });
  // Should the bench die without close(), take the server along rather than leave it running.
  const onExit = () => {
    child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  };
  process.once("exit", onExit);

  const close = async () => {
    process.off("exit", onExit);
    if (exitedWith === undefined) {
      child.kill("SIGTERM");
      const stopped = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
      if (!stopped) {
        child.kill("SIGKILL");
        await exited;
      }
    }
    // The server is gone, and with it its HTTP/2 sessions to us, so this returns at once.
    await new Promise((r) => h2.close(() => r()));
    rmSync(dataDir, { recursive: true, force: true });
  };

  const adminUrl = `http://127.0.0.1:${admin}`;
  const ingressUrl = `http://127.0.0.1:${ingress}`;
  /** Waits until `probe` answers true (a throw is retried) for up to 60 s, unless the server dies. */
  const until = async (what, probe) => {
    try {
      await Promise.race([
        waitFor(what, probe, { timeoutMs: 60_000, intervalMs: 100 }),
        exited.then((why) => {
          throw new Error(`restate-server exited (${why})`);
        }),
      ]);
    } catch (err) {
      const log = readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-30).join("\n"); // before close()
      await close().catch(() => {});
      throw new Error(`restate: ${what}: ${err.message}; server log ends:\n${log}`);
    }
  };
  // Plain fetch: Node's default pool keeps connections alive and has no per-origin cap.
  const post = (url, body, timeoutMs = 5_000) =>
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });

  await until(
    "admin API up",
    async () => (await fetch(`${adminUrl}/health`, { signal: AbortSignal.timeout(5_000) })).ok,
  );
  await until("deployment registered", async () => {
    const res = await post(`${adminUrl}/deployments`, { uri: `http://127.0.0.1:${h2.address().port}` });
    if (!res.ok) throw new Error(`POST /deployments answered ${res.status}: ${await res.text()}`);
    return true;
  });
  await until("ingress routes calls", async () => {
    const res = await post(`${ingressUrl}/${SERVICE}/ping`, null);
    await res.arrayBuffer();
    return res.ok;
  });

  return {
    pid: child.pid,
    /** One run through the ingress, request/response: resolves when the handler has returned. */
    run: async (k) => {
      const res = await post(`${ingressUrl}/${SERVICE}/run`, { k }, 60_000);
      const text = await res.text();
      if (!res.ok) throw new Error(`restate ingress answered ${res.status}: ${text}`);
    },
    close,
  };
}
