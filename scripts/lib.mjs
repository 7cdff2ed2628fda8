// Shared helpers of the native launcher: phase output, commands, child processes, polling and ports.
// Plain ESM for Node 20 so it runs before `npm ci` or `tsc -b` ever did.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** Where every piece of local state lives (git-ignored). */
export const STATE_DIR = path.join(ROOT, ".stepline");

export function phase(message) {
  console.log(`==> ${message}`);
}

export function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Runs fn as a named phase and prints how long it took, also when it fails. */
export async function timed(label, fn) {
  phase(`${label}…`);
  const start = performance.now();
  try {
    return await fn();
  } finally {
    console.log(`    ${label}: ${seconds(performance.now() - start)}`);
  }
}

/** Error whose message is meant for the user as is (no stack trace needed). */
export class UserError extends Error {}

/** Searches PATH plus the sbin folders, which a non-root PATH often lacks. */
export function which(cmd) {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    const file = path.join(dir, cmd);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {}
  }
  return null;
}

/**
 * Runs a command to completion; resolves to { code, signal, output }.
 * output: "inherit" shows it, "tee" shows and collects it, "capture" only collects it (for tools
 * that are noisy when they succeed; runOrThrow shows it when they fail).
 */
export function run(cmd, args, { cwd = ROOT, env, output = "inherit" } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: output === "inherit" ? "inherit" : ["ignore", "pipe", "pipe"],
    });
    let collected = "";
    if (output !== "inherit") {
      for (const [stream, sink] of [
        [child.stdout, process.stdout],
        [child.stderr, process.stderr],
      ]) {
        stream.on("data", (d) => {
          collected += d;
          if (output === "tee") sink.write(d);
        });
      }
    }
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? 128, signal, output: collected }));
  });
}

/** Like run, but a non-zero exit is an error (carrying the captured output, if any). */
export async function runOrThrow(cmd, args, opts) {
  const result = await run(cmd, args, opts);
  if (result.code !== 0) {
    const shown = opts?.output === "capture" ? `\n${result.output.trimEnd()}` : "";
    throw new UserError(`${path.basename(cmd)} ${args.join(" ")} exited with ${result.code}${shown}`);
  }
  return result;
}

/** Polls check() until it returns a truthy value; throws with the last failure after timeoutMs. */
export async function waitFor(label, check, { timeoutMs, intervalMs = 200, isAborted = () => false }) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (isAborted()) throw new UserError(`${label}: gave up (process exited)`);
    if (Date.now() >= deadline) {
      const why = lastError ? `: ${lastError.message ?? lastError}` : "";
      throw new UserError(`${label} not ready after ${seconds(timeoutMs)}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function isPortOpen(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const done = (open) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

// Children still alive when the launcher exits for any reason (even an uncaught error) are killed,
// so nothing keeps a port or a data directory locked behind our back.
const liveChildren = new Set();
process.on("exit", () => {
  for (const child of liveChildren) killGroup(child, "SIGKILL");
});

function killGroup(child, signal) {
  try {
    // Negative pid: the child leads its own process group (detached), so helpers it forked die too.
    process.kill(-child.pid, signal);
  } catch {}
}

/**
 * Starts a long-running child in its own process group, so a Ctrl-C in the terminal reaches only
 * the launcher, which then stops everything in order. Output goes to logFile (the previous run's
 * log is kept as <file>.1) or, with onLine, is handed over line by line.
 */
export function startProcess({ name, cmd, args, cwd = ROOT, env, logFile, onLine }) {
  let stdio = ["ignore", "pipe", "pipe"];
  if (logFile) {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    if (fs.existsSync(logFile)) fs.renameSync(logFile, `${logFile}.1`);
    const fd = fs.openSync(logFile, "w");
    stdio = ["ignore", fd, fd];
  }
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio, detached: true });
  if (logFile) fs.closeSync(stdio[1]);
  liveChildren.add(child);
  const exited = new Promise((resolve) => {
    child.once("error", (err) => resolve({ code: 127, signal: null, error: err }));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  }).then((result) => {
    liveChildren.delete(child);
    return result;
  });
  if (onLine) {
    for (const stream of [child.stdout, child.stderr]) {
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop();
        for (const line of lines) onLine(line);
      });
      stream.on("end", () => partial && onLine(partial));
    }
  }
  let hasExited = false;
  exited.then(() => {
    hasExited = true;
  });
  return {
    name,
    pid: child.pid,
    exited,
    hasExited: () => hasExited,
    /** SIGTERM, then SIGKILL if still alive after timeoutMs; resolves once the process is gone. */
    async stop(timeoutMs) {
      if (hasExited) return exited;
      killGroup(child, "SIGTERM");
      const timer = setTimeout(() => {
        console.log(`    ${name} still running after ${seconds(timeoutMs)}: SIGKILL`);
        killGroup(child, "SIGKILL");
      }, timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

// Cleanups run last-registered first, so services stop before the infrastructure they use.
const cleanups = [];
let shuttingDown = null;

/** Registers fn to run on SIGINT/SIGTERM or shutdown(); returns a function that unregisters it. */
export function onShutdown(fn) {
  installSignalHandlers();
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/** Runs every registered cleanup, then exits with code (default: process.exitCode or 0). */
export function shutdown(code) {
  shuttingDown ??= (async () => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop();
      try {
        await fn();
      } catch (err) {
        console.error(`    cleanup failed: ${err.message ?? err}`);
      }
    }
    process.exit(code ?? process.exitCode ?? 0);
  })();
  return shuttingDown;
}

let handlersInstalled = false;
function installSignalHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      if (shuttingDown) {
        // A second signal means "now": the exit hook SIGKILLs whatever is left.
        console.log(`==> ${signal} again: killing everything`);
        process.exit(1);
      }
      console.log(`\n==> ${signal} received: stopping…`);
      shutdown();
    });
  }
}
