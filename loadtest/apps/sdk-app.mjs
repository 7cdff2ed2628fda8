// An app on the official SDK (v4, its defaults: checkpointing on unless `checkpointing: false`): a
// function of three sequential `step.run`s, served over node:http the way a user's app would be,
// synced with the SDK's own PUT flow.
import { createServer } from "node:http";
import { Inngest } from "inngest";
import { serve } from "inngest/node";

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * Serves `<appId>-steps`; `onDone(k)` runs in its last step (`k` is the event's `data.k`).
 * `checkpointing: false` makes the SDK take one step per request.
 */
export async function startSdkApp({ appId, baseUrl, checkpointing = true, onDone = () => {} }) {
  const client = new Inngest({
    id: appId,
    baseUrl,
    isDev: true,
    eventKey: "bench",
    logger: quiet,
    checkpointing,
  });
  const fn = client.createFunction(
    { id: "steps", triggers: [{ event: `${appId}/run` }], retries: 0 },
    async ({ event, step }) => {
      const a = await step.run("s1", () => 1);
      const b = await step.run("s2", () => a + 1);
      return step.run("s3", () => {
        onDone(event.data.k);
        return b + 1;
      });
    },
  );
  let handler = (_req, res) => res.writeHead(503).end();
  const server = createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  handler = serve({ client, functions: [fn], baseUrl, servePath: "/api/inngest", serveOrigin: origin });
  const url = `${origin}/api/inngest`;
  return {
    url,
    fnId: `${appId}-steps`,
    sync: async () => {
      const res = await fetch(url, { method: "PUT" });
      if (res.status !== 200) throw new Error(`sync of ${appId} answered ${res.status}: ${await res.text()}`);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
