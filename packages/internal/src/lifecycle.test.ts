// runService in a process of its own (it installs signal handlers and exits): the admin port is up
// before the parts are, /readyz follows readyWhen, and SIGTERM runs the stops newest first, then
// exits 0. A start that throws exits 1 with the error; a bad configuration exits 1 naming what is wrong.

import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { freePort, waitFor } from "./testing.js";

const LIFECYCLE = new URL("../dist/lifecycle.js", import.meta.url).href;
const config = (adminPort: number) => `{
  STEPLINE_LOG_LEVEL: "info", STEPLINE_DEV: true, STEPLINE_ADMIN_PORT: ${adminPort},
  STEPLINE_ADMIN_HOST: "127.0.0.1", STEPLINE_INTERNAL_TOKEN: "",
}`;

let child: ChildProcess | undefined;
afterEach(() => {
  child?.kill("SIGKILL");
  child = undefined;
});

/** Runs `body` (the inside of a module that has `runService` imported) and collects its output. */
function service(body: string, env: Record<string, string> = {}) {
  const code = `import { runService } from ${JSON.stringify(LIFECYCLE)};\n${body}`;
  const proc = spawn(process.execPath, ["--input-type=module", "-e", code], {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  child = proc;
  const out = { stdout: "", stderr: "" };
  proc.stdout.on("data", (d: Buffer) => {
    out.stdout += d.toString();
  });
  proc.stderr.on("data", (d: Buffer) => {
    out.stderr += d.toString();
  });
  const exited = once(proc, "exit").then(([code]) => code as number | null);
  return { proc, out, exited };
}

/** The JSON log lines printed so far. */
function logLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

it("serves the admin port before the parts start, is ready only once told, and stops the parts newest first on SIGTERM", async () => {
  const admin = await freePort();
  const svc = service(`
    runService({
      name: "demo",
      config: () => (${config(admin)}),
      async start({ log, onStop, readyWhen, stopping }) {
        onStop(() => console.log("STOP redis"));
        onStop(async () => {
          await new Promise((r) => setTimeout(r, 20));
          console.log("STOP consumer, aborted=" + stopping.aborted);
        });
        // The parts wait for the test (a dependency coming up late): one line on stdin.
        await new Promise((r) => process.stdin.once("data", r));
        readyWhen(() => true);
        return { grpcPort: 1234 };
      },
    }, process.env);
  `);
  const healthz = await waitFor("the admin port to answer", () =>
    fetch(`http://127.0.0.1:${admin}/healthz`).catch(() => undefined),
  );
  expect(healthz.status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${admin}/readyz`)).status).toBe(503);

  svc.proc.stdin?.write("go\n");
  const started = await waitFor("the started line", async () =>
    logLines(svc.out.stdout).find((l) => l.msg === "demo started"),
  );
  expect(started).toMatchObject({ service: "demo", grpcPort: 1234, adminPort: admin });
  expect((await fetch(`http://127.0.0.1:${admin}/readyz`)).status).toBe(200);

  svc.proc.kill("SIGTERM");
  expect(await svc.exited).toBe(0);
  const stops = svc.out.stdout.split("\n").filter((l) => l.startsWith("STOP"));
  expect(stops).toEqual(["STOP consumer, aborted=true", "STOP redis"]);
});

it("exits 1 with the error when start throws, and with the problem of a bad configuration", async () => {
  const failing = service(`
    runService({
      name: "demo",
      config: () => (${config(0)}),
      async start() { throw new Error("cannot reach the thing"); },
    }, process.env);
  `);
  expect(await failing.exited).toBe(1);
  expect(failing.out.stderr).toMatch(/^demo failed to start: Error: cannot reach the thing/);

  const badConfig = service(
    `
    import { loadConfig, commonSchema } from ${JSON.stringify(new URL("../dist/config.js", import.meta.url).href)};
    runService({
      name: "demo",
      config: (env) => loadConfig(commonSchema, env),
      async start() { return {}; },
    }, process.env);
  `,
    { STEPLINE_ADMIN_PORT: "seventy" },
  );
  expect(await badConfig.exited).toBe(1);
  expect(badConfig.out.stderr).toContain("demo: ");
  expect(badConfig.out.stderr).toContain("STEPLINE_ADMIN_PORT");
});
