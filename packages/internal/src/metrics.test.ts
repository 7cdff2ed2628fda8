// The process-wide metrics every service serves on /metrics: the event-loop utilization gauge
// reads how busy the loop was between two scrapes (without a timer of its own).

import { execFile } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { metrics } from "./lifecycle.js";

const run = promisify(execFile);

async function utilization(): Promise<number> {
  const text = await metrics.getSingleMetricAsString("nodejs_eventloop_utilization_ratio");
  const value = /^nodejs_eventloop_utilization_ratio (\S+)$/m.exec(text)?.[1];
  if (value === undefined) throw new Error(`no utilization in:\n${text}`);
  return Number(value);
}

it("reports the event loop's busy share since the previous scrape", async () => {
  await utilization(); // the window starts here
  const until = performance.now() + 100;
  while (performance.now() < until) {
    // busy: the loop does not get back to waiting for I/O
  }
  expect(await utilization()).toBeGreaterThan(0.5);
  await sleep(300); // the loop waits for the timer: idle
  expect(await utilization()).toBeLessThan(0.5);
});

it("does not wake an idle process to sample the event-loop lag", async () => {
  // A process with the metrics loaded counts its wake-ups (voluntary context switches of its main
  // thread) over one idle second. prom-client's default lag sampling (every 10 ms) made it ~100.
  const lifecycle = new URL("../dist/lifecycle.js", import.meta.url).href;
  const code = `
    import { readFileSync } from "node:fs";
    await import(${JSON.stringify(lifecycle)});
    const switches = () => Number(/voluntary_ctxt_switches:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]);
    await new Promise((r) => setTimeout(r, 200));
    const before = switches();
    setTimeout(() => console.log(switches() - before), 1000);`;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", code]);
  const wakeUps = Number(stdout.trim());
  expect(Number.isInteger(wakeUps), `child printed ${JSON.stringify(stdout)}`).toBe(true);
  expect(wakeUps).toBeLessThan(30);
});
