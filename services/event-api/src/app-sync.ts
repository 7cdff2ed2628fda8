// Sync by URL (the dashboard's "Sync new app", `POST /v1/apps/sync`): a PUT to the app's serve
// URL, which makes the SDK register its functions with the Stepline it is configured for (POST
// /fn/register), as Inngest's dev server does. The URL comes from a user, so the call goes through
// the egress policy (packages/internal/src/egress.ts), checked at connect time like the executor's.

import type { EgressPolicy } from "@stepline/internal/egress";
import { guardedLookup, literalRefusal } from "@stepline/internal/egress";
import { BadGatewayError, ValidationError } from "@stepline/internal/errors";
import { Agent, request } from "undici";

/** The most of an app's answer that is read (its message is shown, never the whole body). */
const MAX_ANSWER_BYTES = 64 * 1024;
const MAX_URL_CHARS = 2048;

export interface AppSyncer {
  /** PUTs `url`; resolves with the SDK's answer, or throws ValidationError / BadGatewayError. */
  sync(url: string): Promise<{ modified: boolean | null; message: string }>;
}

/** The SDK's message in an answer body ({message} or {error}), or a description of the body. */
function messageOf(text: string, status: number): string {
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: unknown };
    const m = body.message ?? body.error;
    if (typeof m === "string" && m) return m.slice(0, 500);
  } catch {
    // Not JSON: described below, never copied (it may be any server's page).
  }
  return `HTTP ${status} with a ${text.length}-byte body that is not an SDK's answer`;
}

export function appSyncer(o: { egress: EgressPolicy; timeoutMs: number }): AppSyncer {
  const agent = new Agent({
    connect: { lookup: guardedLookup(o.egress), timeout: o.timeoutMs },
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
  });
  return {
    async sync(raw) {
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new ValidationError(
          "url must be an absolute http(s) URL, like http://localhost:3000/api/inngest",
        );
      }
      if ((url.protocol !== "http:" && url.protocol !== "https:") || raw.length > MAX_URL_CHARS) {
        throw new ValidationError(`url must be an http(s) URL of at most ${MAX_URL_CHARS} characters`);
      }
      const refused = literalRefusal(o.egress, url);
      if (refused) throw new ValidationError(refused);
      let status: number;
      let text: string;
      try {
        const res = await request(url, {
          method: "PUT",
          dispatcher: agent,
          headers: { "content-length": "0" },
        });
        status = res.statusCode;
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res.body) {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) {
            res.body.destroy();
            break;
          }
          chunks.push(chunk as Buffer);
        }
        text = Buffer.concat(chunks).toString("utf8");
      } catch (err) {
        const e = err as Error & { cause?: Error };
        const cause = e.cause ?? e;
        if (cause.name === "EgressRefusedError") throw new ValidationError(cause.message);
        throw new BadGatewayError(`could not reach ${url.origin}: ${cause.message || e.name}`);
      }
      const message = messageOf(text, status);
      if (status < 200 || status > 299)
        throw new BadGatewayError(`the app answered the sync with ${status}: ${message}`);
      let modified: boolean | null = null;
      try {
        const m = (JSON.parse(text) as { modified?: unknown }).modified;
        if (typeof m === "boolean") modified = m;
      } catch {
        // A 2xx without JSON still synced; modified is unknown.
      }
      return { modified, message };
    },
  };
}
