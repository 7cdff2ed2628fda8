// The top-level README's configuration table must name every variable any service reads, with
// the default the service really uses, so the table cannot silently fall behind the code.
import { readFileSync } from "node:fs";
import { loadConfig } from "@stepline/internal/config";
import { describe, expect, it } from "vitest";
import { configSchema as eventApi } from "../services/event-api/src/config.js";
import { configSchema as executor } from "../services/executor/src/config.js";
import { configSchema as history } from "../services/history/src/config.js";
import { configSchema as queue } from "../services/queue/src/config.js";
import { configSchema as runner } from "../services/runner/src/config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

/** variable -> default column, from every `| \`STEPLINE_...\` | default | meaning |` row. */
function documented(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of readme.matchAll(/^\|\s*`(STEPLINE_[A-Z0-9_]+)`\s*\|([^|]*)\|/gm)) {
    rows.set(m[1] as string, (m[2] as string).trim());
  }
  return rows;
}

const schemas = { "event-api": eventApi, runner, queue, executor, history } as const;

describe("the README's configuration table", () => {
  it("names every variable that any service reads, and no other", () => {
    const read = new Set(Object.values(schemas).flatMap((s) => Object.keys(s)));
    expect([...documented().keys()].sort()).toEqual([...read].sort());
  });

  it("shows the default each service really uses", () => {
    const table = documented();
    for (const [service, schema] of Object.entries(schemas)) {
      const defaults = loadConfig(schema, {}) as Record<string, unknown>;
      for (const [name, value] of Object.entries(defaults)) {
        const written = table.get(name) ?? "";
        const shown = typeof value === "boolean" ? (value ? "1" : "0") : String(value);
        if (shown === "") expect(written, `${service} ${name}`).toBe("empty");
        else expect(written, `${service} ${name}`).toContain(`\`${shown}\``);
      }
    }
  });
});
