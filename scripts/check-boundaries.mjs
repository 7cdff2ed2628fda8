// Fails when a service reaches into another service (imports) or code reads process.env outside a
// config.ts/main.ts: the two boundaries docs/architecture.md says a tool checks. Prints file:line per breach.
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./lib.mjs";

// Specifiers of `from "x"`, `import "x"`, `import("x")`, `require("x")`, one line at a time.
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)(["'])([^"']+)\1/g;
// Workspace packages a service may import besides its own files.
const SHARED_PACKAGES = new Set(["internal", "proto"]);

function tsFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return ["node_modules", "dist"].includes(entry.name) ? [] : tsFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

function codeLines(file) {
  // Comment lines may mention process.env or another service; they break nothing.
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .map((text, i) => ({ text, where: `${path.relative(ROOT, file)}:${i + 1}` }))
    .filter(({ text }) => !/^\s*(\/\/|\/\*|\*)/.test(text));
}

function importBreaches(service, file) {
  const own = path.join(ROOT, "services", service);
  const found = [];
  for (const { text, where } of codeLines(file)) {
    for (const [, , spec] of text.matchAll(IMPORT)) {
      const pkg = /^@stepline\/([^/]+)/.exec(spec)?.[1];
      const target = path.resolve(path.dirname(file), spec);
      const leavesPackage = spec.startsWith(".") && path.relative(own, target).startsWith("..");
      if ((pkg && pkg !== service && !SHARED_PACKAGES.has(pkg)) || leavesPackage) {
        found.push(
          `${where}: imports "${spec}" (a service imports only @stepline/internal, @stepline/proto, itself)`,
        );
      }
    }
  }
  return found;
}

// Test code reads the STEPLINE_TEST_* servers the test runner started; it ships in no service.
// The `testing` name also covers packages/internal/src/testing.ts: built with the package, but
// imported only by tests (as @stepline/internal/testing).
const TEST_CODE = /\.(test|fixture)\.ts$|\/(testing|test-helpers|test-support)(\/|\.ts$)/;

function envBreaches(file) {
  if (["config.ts", "main.ts"].includes(path.basename(file)) || TEST_CODE.test(file)) return [];
  return codeLines(file)
    .filter(({ text }) => text.includes("process.env"))
    .map(({ where }) => `${where}: process.env outside config.ts/main.ts`);
}

const breaches = [];
const servicesDir = path.join(ROOT, "services");
for (const service of fs.readdirSync(servicesDir)) {
  for (const file of tsFiles(path.join(servicesDir, service, "src")))
    breaches.push(...importBreaches(service, file));
  for (const file of tsFiles(path.join(servicesDir, service))) breaches.push(...envBreaches(file));
}
for (const file of tsFiles(path.join(ROOT, "packages", "internal", "src")))
  breaches.push(...envBreaches(file));

for (const breach of breaches) console.error(breach);
if (breaches.length > 0) {
  console.error(`boundaries: ${breaches.length} breach(es)`);
  process.exit(1);
}
console.log("boundaries ok");
