// Test support: one function served with the official SDK (v4 or v3) on loopback and synced by
// PUT, as a user would sync it (http-api.test.ts checks what /fn/register makes of it).
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Inngest } from "inngest";
import { serve } from "inngest/node";
import { Inngest as Inngest3 } from "inngest-v3";
import { serve as serve3 } from "inngest-v3/node";

export const quiet = { info() {}, warn() {}, error() {}, debug() {} };

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The serve handler of one function `greet` (2 retries, on `demo/greet`) with SDK v4 or v3. */
function greetHandler(opts: SyncOptions, origin: string): Handler {
  const common = { id: opts.id, baseUrl: opts.baseUrl, isDev: !opts.signingKey, logger: quiet };
  const signing = opts.signingKey ? { signingKey: opts.signingKey } : {};
  const serveOpts = { ...signing, baseUrl: opts.baseUrl, servePath: "/api/inngest" };
  if (opts.sdk === "v4") {
    const client = new Inngest({ ...common, ...signing, checkpointing: false });
    const fn = client.createFunction(
      { id: "greet", retries: 2, triggers: [{ event: "demo/greet" }] },
      async () => "hi",
    );
    return serve({ client, functions: [fn], ...serveOpts, serveOrigin: origin });
  }
  const client = new Inngest3({ ...common, ...signing });
  const fn = client.createFunction({ id: "greet", retries: 2 }, { event: "demo/greet" }, async () => "hi");
  return serve3({ client, functions: [fn], ...serveOpts, serveHost: origin });
}

interface SyncOptions {
  sdk: "v4" | "v3";
  baseUrl: string;
  signingKey?: string;
  id: string;
}

/** Serves one function with the SDK (v4 or v3) and syncs it by PUT, as a user would. */
export async function syncWithSdk(opts: SyncOptions) {
  let handler: Handler = (_req, res) => void res.writeHead(503).end();
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  handler = greetHandler(opts, origin);
  try {
    const res = await fetch(`${origin}/api/inngest`, { method: "PUT" });
    return {
      status: res.status,
      body: (await res.json()) as { message?: string; modified?: boolean },
      origin,
    };
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}
