// The SDK v4 app's own ceiling, for `npm run bench`: the same app driven with the engine taken
// out, so the share of it that runs through Stepline reach says what the engine costs the app.
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

/**
 * Stands in for the engine's checkpoint endpoint and answers at once, so in the ceiling scenario
 * the SDK app alone sets the pace.
 */
export async function startNullEngine() {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Closed-loop runs of `app` (its url, fnId and event) for `durationMs`, `clients` at once. Each
 * client sends the first call of a run the way the executor does (its own HTTP client and request
 * body, with the checkpointing fields), straight to the app, whose checkpoints reach
 * `startNullEngine`; a run is that one call answering RunComplete. Returns each completed run's
 * latency (ms, sorted), the calls that did not complete a run, and the seconds it took.
 */
export async function sdkCeiling(app, clients, durationMs) {
  // The executor's own client and body (built by `npm start`), loaded only for this scenario.
  const { AppClient, buildCallBody } = await import("../services/executor/dist/app-client.js");
  const client = new AppClient({ timeoutMs: 60_000, maxResponseBytes: 4 << 20, serverKind: "dev" });
  const latencies = [];
  let failed = 0;
  let seq = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() - t0 < durationMs) {
        const runId = randomBytes(13).toString("hex").toUpperCase();
        const event = { data: { k: `ceiling-${seq++}` }, id: runId, name: app.event, ts: Date.now() };
        const body = buildCallBody({
          runId,
          eventsJson: JSON.stringify([event]),
          steps: new Map(),
          stack: [],
          attempt: 0,
          maxAttempts: 1,
          reqVersion: -1,
          checkpoint: { functionId: app.fnId, queueItemId: `${runId}:start` },
        });
        const start = performance.now();
        const out = await client.call({
          url: `${app.url}?fnId=${app.fnId}&stepId=step`,
          stepId: "step",
          body,
          reqVersion: -1,
          signal: AbortSignal.timeout(60_000),
        });
        const ended =
          out.kind === "response" && out.response.status === 206 && out.response.body.includes("RunComplete");
        if (ended) latencies.push(performance.now() - start);
        else failed++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { latencies, failed, elapsedS: (performance.now() - t0) / 1000 };
}
