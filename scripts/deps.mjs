// Node dependencies and the TypeScript build, each skipped (or incremental) when already up to date.
import fs from "node:fs";
import path from "node:path";
import { phase, ROOT, runOrThrow } from "./lib.mjs";

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return null;
  }
}

/** Runs `npm ci` when node_modules is missing or older than package-lock.json. */
export async function ensureNodeDeps() {
  // npm writes node_modules/.package-lock.json after every install; older than the lock = stale.
  const installed = mtime(path.join(ROOT, "node_modules", ".package-lock.json"));
  const locked = mtime(path.join(ROOT, "package-lock.json"));
  if (installed !== null && locked !== null && installed >= locked) return;
  phase(installed === null ? "installing Node dependencies (npm ci)…" : "package-lock.json changed: npm ci…");
  await runOrThrow("npm", ["ci", "--no-audit", "--no-fund"]);
}

/** Runs `tsc -b` (incremental: a no-op build takes well under a second). */
export async function ensureBuilt() {
  phase("building TypeScript (tsc -b)…");
  await runOrThrow(path.join(ROOT, "node_modules", ".bin", "tsc"), ["-b"]);
}
