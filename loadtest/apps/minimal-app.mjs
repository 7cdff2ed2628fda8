// A minimal app that speaks the SDK's HTTP protocol itself (docs/sdk-protocol.md), so a benchmark
// measures the engine rather than the SDK: a function of `steps` sequential steps, each run as it
// is discovered (one `StepRun` op per call), then the run's output. Dev mode only (no signatures).
import { createHash } from "node:crypto";
import { createServer } from "node:http";

const sha1 = (s) => createHash("sha1").update(s).digest("hex");
const HEADERS = {
  "content-type": "application/json",
  "x-inngest-sdk": "js:v4.24.0",
  "x-inngest-req-version": "2",
};

/**
 * Serves the function `<appId>-steps` on a free loopback port. `onCall(k, n)` sees each call (n =
 * steps already saved), `onDone(k)` the last one; `k` is the event's `data.k`.
 */
export async function startMinimalApp({ appId, steps = 3, onCall = () => {}, onDone = () => {} }) {
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        res.writeHead(400, HEADERS).end('{"error":"not JSON"}');
        return;
      }
      const k = body.event?.data?.k;
      const n = Object.keys(body.steps ?? {}).length;
      onCall(k, n);
      if (n < steps) {
        const name = `s${n + 1}`;
        const op = { id: sha1(name), op: "StepRun", name, displayName: name, data: n + 1 };
        res.writeHead(206, HEADERS).end(JSON.stringify([op]));
        return;
      }
      res.writeHead(200, HEADERS).end(JSON.stringify({ steps: n }));
      onDone(k);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/api/inngest`;
  const fnId = `${appId}-steps`;
  return {
    url,
    fnId,
    /** The sync body an SDK would POST to /fn/register. */
    registration: {
      url,
      deployType: "ping",
      framework: "nodejs",
      appName: appId,
      sdk: "js:v4.24.0",
      v: "0.1",
      functions: [
        {
          id: fnId,
          name: "steps",
          triggers: [{ event: `${appId}/run` }],
          steps: {
            step: {
              id: "step",
              name: "step",
              runtime: { type: "http", url: `${url}?fnId=${fnId}&stepId=step` },
            },
          },
        },
      ],
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
