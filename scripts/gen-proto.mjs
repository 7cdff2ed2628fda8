// Regenerates packages/proto/src from proto/ with buf + ts-proto (`npm run gen`).
// Generated code is committed and never edited by hand; `npm test` checks it is current.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "packages/proto/src");
rmSync(out, { recursive: true, force: true });
const buf = join(root, "node_modules/.bin/buf");
execFileSync(buf, ["lint"], { cwd: join(root, "proto"), stdio: "inherit" });
execFileSync(buf, ["generate"], { cwd: join(root, "proto"), stdio: "inherit" });
