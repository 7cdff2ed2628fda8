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

const DASHBOARD = path.join(ROOT, "packages", "dashboard");

/** The newest modification time of the files under `dir` (0 when there are none). */
function newestUnder(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, mtime(path.join(entry.parentPath, entry.name)) ?? 0);
  }
  return newest;
}

/** True when the dashboard's build is missing or older than its sources. */
function dashboardStale() {
  const built = mtime(path.join(DASHBOARD, "dist", "index.html"));
  if (built === null) return true;
  const sources = ["index.html", "vite.config.ts", "package.json"].map(
    (f) => mtime(path.join(DASHBOARD, f)) ?? 0,
  );
  return Math.max(newestUnder(path.join(DASHBOARD, "src")), ...sources) > built;
}

/**
 * Runs `tsc -b` (incremental: a no-op build takes well under a second), then builds the dashboard
 * (Vite, into packages/dashboard/dist, which event-api serves) when its sources changed.
 */
export async function ensureBuilt() {
  phase("building TypeScript (tsc -b)…");
  await runOrThrow(path.join(ROOT, "node_modules", ".bin", "tsc"), ["-b"]);
  if (!dashboardStale()) return;
  phase("building the dashboard (vite build)…");
  await runOrThrow(path.join(ROOT, "node_modules", ".bin", "vite"), ["build", "--logLevel", "warn"], {
    cwd: DASHBOARD,
  });
}
