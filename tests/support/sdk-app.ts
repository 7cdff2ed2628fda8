// Serves functions written with the official inngest SDK (v4 or v3) from a real HTTP server on
// loopback, the way a user's app would, and syncs it to Stepline with the SDK's own PUT flow.

import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { Inngest as Inngest4 } from "inngest";
import { serve as serve4 } from "inngest/node";
import { Inngest as Inngest3 } from "inngest-v3";
import { serve as serve3 } from "inngest-v3/node";

export type SdkVersion = "v4" | "v3";

export interface SdkAppOptions {
  sdk: SdkVersion;
  /** The app id (the SDK prefixes function ids with it). */
  id: string;
  /** Stepline's API base, e.g. http://127.0.0.1:8288. */
  baseUrl: string;
  /** Production mode when set: the SDK checks Stepline's signatures and signs its answers. */
  signingKey?: string;
  eventKey?: string;
  /** The fetch the SDK sends events with (tests use it to lose answers on purpose). */
  fetch?: typeof fetch;
  /** SDK v4 only: let it checkpoint (run steps inside one call); off unless set. */
  checkpointing?: boolean;
  /**
   * Dev mode only (it breaks signatures): rewrites the JSON body of each call before the SDK reads
   * it, as a broken proxy in front of an app would.
   */
  alterCallBody?: (body: any, url: URL) => any;
}

export interface SdkApp {
  /** The serve URL, e.g. http://127.0.0.1:41234/api/inngest. */
  url: string;
  /** Registers the app's functions with Stepline (PUT to the app, which POSTs /fn/register). */
  sync(): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** A client of the chosen SDK major, configured for Stepline. */
export function makeClient(opts: SdkAppOptions): any {
  const common = {
    id: opts.id,
    baseUrl: opts.baseUrl,
    isDev: !opts.signingKey,
    eventKey: opts.eventKey ?? "test-key",
    logger: quietLogger,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  };
  if (opts.sdk === "v4") {
    return new Inngest4({
      ...common,
      signingKey: opts.signingKey,
      checkpointing: opts.checkpointing ?? false,
    } as any);
  }
  return new Inngest3({ ...common, signingKey: opts.signingKey } as any);
}

/** Serves `functions` (built with `client`) and returns the app's URL and a sync helper. */
export async function serveSdkApp(opts: SdkAppOptions, client: any, functions: any[]): Promise<SdkApp> {
  const serveFn: any = opts.sdk === "v4" ? serve4 : serve3;
  // The serve handler needs its own public origin, known only once the port is bound.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end();
  const alter = opts.alterCallBody;
  const server = createServer((req, res) => {
    if (!alter || req.method !== "POST") return handler(req, res);
    void readBody(req).then((text) => {
      const altered = JSON.stringify(alter(JSON.parse(text), new URL(req.url ?? "/", "http://app")));
      // The SDK reads the body through "data" and "end" and the rest from these fields.
      const copy = Object.assign(Readable.from([Buffer.from(altered)]), {
        headers: req.headers,
        method: req.method,
        url: req.url,
        socket: req.socket,
      });
      handler(copy as unknown as IncomingMessage, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${origin}/api/inngest`;
  handler = serveFn({
    client,
    functions,
    signingKey: opts.signingKey,
    baseUrl: opts.baseUrl,
    servePath: "/api/inngest",
    ...(opts.sdk === "v4" ? { serveOrigin: origin } : { serveHost: origin }),
  });
  return {
    url,
    async sync() {
      const res = await fetch(url, { method: "PUT" });
      const text = await res.text();
      let body: any = text;
      try {
        body = JSON.parse(text);
      } catch {}
      return { status: res.status, body };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const noop = () => {};
const quietLogger = { info: noop, warn: noop, error: noop, debug: noop };

/** Serves `functions` and syncs them to Stepline; throws with Stepline's answer if the sync fails. */
export async function serveAndSync(opts: SdkAppOptions, client: any, functions: any[]): Promise<SdkApp> {
  const app = await serveSdkApp(opts, client, functions);
  const synced = await app.sync();
  if (synced.status !== 200) {
    await app.close();
    throw new Error(`sync of ${opts.id} answered ${synced.status}: ${JSON.stringify(synced.body)}`);
  }
  return app;
}
