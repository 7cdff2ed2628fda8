// HTTP calls to users' apps in the SDK wire protocol (docs/sdk-protocol.md, "The request"): the
// request body as RFC 8785 canonical JSON, its HMAC signature, the headers, and the answer read
// with a size cap and its signature checked (production mode).

import { createHmac, timingSafeEqual } from "node:crypto";
import type { EgressPolicy } from "@stepline/internal/egress";
import { guardedLookup, literalRefusal } from "@stepline/internal/egress";
import canonicalize from "canonicalize";
import { Agent, type Dispatcher } from "undici";
import type { CallOutcome } from "./steps.js";

/** What a call body is built from. */
export interface CallBodyInput {
  runId: string;
  /** The trigger events as a canonical JSON array (the first one is `event`). */
  eventsJson: string;
  /**
   * The length of the first event's text inside `eventsJson` (state keeps it), so the call does
   * not parse every event to find it; absent = parse (runs created before it was kept).
   */
  firstEventLength?: number | undefined;
  /** Hashed step id -> canonical memo JSON. */
  steps: ReadonlyMap<string, string>;
  /** Hashed ids in completion order. */
  stack: readonly string[];
  attempt: number;
  maxAttempts: number;
  /** The SDK's last x-inngest-req-version (1 or 2), or -1 before its first answer. */
  reqVersion: number;
  /** Whether the SDK must plan steps rather than run them (after parallel steps). */
  disableImmediate?: boolean;
  /**
   * Set to let SDK v4 checkpoint (docs/sdk-protocol.md, "Checkpointing"): the function's id and
   * the call's queue item id, which the SDK echoes on /v1/checkpoint/<run>/async.
   */
  checkpoint?: { functionId: string; queueItemId: string } | undefined;
}

/**
 * The request body `{ctx, event, events, steps, version}` as canonical JSON. It is assembled from
 * fragments that are canonical already (stored memos and events), so large states are not parsed
 * and re-serialized on every call. `ctx.fn_id` and `ctx.qi_id` are sent only with `checkpoint`:
 * they switch SDK v4 to checkpointing (docs/sdk-protocol.md).
 */
export function buildCallBody(input: CallBodyInput): string {
  const event = firstEventOf(input.eventsJson, input.firstEventLength);
  const ctx = ctxJson(input);
  const ids = [...input.steps.keys()].sort();
  const steps = ids.map((id) => `${JSON.stringify(id)}:${input.steps.get(id)}`).join(",");
  // `version` mirrors the x-inngest-req-version header: with -1 in the header the SDK reads the
  // body's version, so a fixed 2 here would force SDK v3 onto its optimizeParallelism engine.
  const version = requestVersionHeader(input.reqVersion);
  // Keys in JCS order: ctx < event < events < steps < version.
  return `{"ctx":${ctx},"event":${event},"events":${input.eventsJson},"steps":{${steps}},"version":${version}}`;
}

/**
 * `ctx` as canonical JSON, written out in JCS key order (code points: attempt < disable_... <
 * fn_id < max_attempts < qi_id < run_id < stack < use_api; current < stack): every call makes one,
 * and the generic canonicalizer took about 2 % of the executor's CPU doing it (profile at 64
 * clients). Strings and integers serialize as JSON.stringify does, as RFC 8785 prescribes.
 */
function ctxJson(input: CallBodyInput): string {
  const cp = input.checkpoint;
  const stack = `{"current":${input.stack.length},"stack":[${input.stack.map((id) => JSON.stringify(id)).join(",")}]}`;
  return (
    `{"attempt":${input.attempt},"disable_immediate_execution":${input.disableImmediate === true},` +
    (cp ? `"fn_id":${JSON.stringify(cp.functionId)},` : "") +
    `"max_attempts":${input.maxAttempts},` +
    (cp ? `"qi_id":${JSON.stringify(cp.queueItemId)},` : "") +
    `"run_id":${JSON.stringify(input.runId)},"stack":${stack},"use_api":false}`
  );
}

/**
 * The first event of a canonical JSON array of events: `[<first>,<second>...]` holds it verbatim at
 * offset 1, so its length is all that is needed (canonical arrays have no spaces).
 */
function firstEventOf(eventsJson: string, length: number | undefined): string {
  if (length !== undefined && length > 1) {
    const after = eventsJson[1 + length];
    if (after === "," || after === "]") return eventsJson.slice(1, 1 + length);
  }
  const events = JSON.parse(eventsJson) as unknown[];
  return canonicalize(events[0] ?? {}) ?? "{}";
}

/** The length of `firstEventOf`'s answer, computed once when the run is created. */
export function firstEventLength(events: readonly unknown[]): number {
  return (canonicalize(events[0] ?? {}) ?? "{}").length;
}

/** The request version to send: the SDK's last answer (1 or 2), else -1 ("SDK decides"); never 0. */
export function requestVersionHeader(reqVersion: number): string {
  return String(reqVersion === 1 || reqVersion === 2 ? reqVersion : -1);
}

/** The HMAC secret of a signing key: the text after its `signkey-<env>-` prefix. */
export function signingSecret(signingKey: string): string {
  return signingKey.replace(/^signkey-\w+-/, "");
}

/** `HMAC-SHA256(secret, body + t)` in hex. */
export function hmacHex(signingKey: string, body: string, timestamp: string): string {
  return createHmac("sha256", signingSecret(signingKey)).update(body).update(timestamp).digest("hex");
}

/** The `X-Inngest-Signature` value for `body` at `nowSeconds`. */
export function signBody(body: string, signingKey: string, nowSeconds: number): string {
  const t = String(Math.floor(nowSeconds));
  return `t=${t}&s=${hmacHex(signingKey, body, t)}`;
}

/** How far a signature's timestamp may be from now: the SDK allows Stepline's requests as much. */
export const SIGNATURE_MAX_SKEW_S = 5 * 60;

/**
 * True when `header` is a valid signature of the raw `body` with `signingKey` (constant time),
 * made within SIGNATURE_MAX_SKEW_S of `nowSeconds`: an answer recorded once and replayed later
 * is refused.
 */
export function verifySignature(
  body: string,
  header: string | undefined,
  signingKey: string,
  nowSeconds: number,
): boolean {
  if (!header) return false;
  const params = new URLSearchParams(header);
  const t = params.get("t");
  const s = params.get("s");
  if (!t || !s || !/^\d{1,12}$/.test(t) || Math.abs(nowSeconds - Number(t)) > SIGNATURE_MAX_SKEW_S)
    return false;
  const expected = Buffer.from(hmacHex(signingKey, body, t), "utf8");
  const given = Buffer.from(s, "utf8");
  return expected.length === given.length && timingSafeEqual(expected, given);
}

export interface AppClientOptions {
  /** Whole-call deadline (connect, headers and body). */
  timeoutMs: number;
  /** Answers larger than this fail the call without retry. */
  maxResponseBytes: number;
  /** "cloud" in production, "dev" in dev mode (sent as x-inngest-server-kind). */
  serverKind: "cloud" | "dev";
  /** Which addresses may be called (egress.ts); absent = any. */
  egress?: EgressPolicy;
}

export interface AppCall {
  /** The function's URL from the sync (already carries fnId and stepId=step). */
  url: string;
  /** "step" to discover, or the hashed id of a planned step to run. */
  stepId: string;
  /** Canonical JSON (buildCallBody). */
  body: string;
  /** The SDK's last x-inngest-req-version (1 or 2), or -1 before its first answer. */
  reqVersion: number;
  /** Production mode: sign the request and require a signed answer. */
  signingKey?: string;
  /** Aborts the call (lease lost, shutdown); the caller tells why from its own signal. */
  signal: AbortSignal;
  /**
   * Names this call for event ids: sent as `tracestate: stepline=<token>`, which the SDK forwards
   * on the `POST /e` of a step.sendEvent, so event-api derives the events' ids from it and a
   * retried call (the same token) sends the same ids (docs: event-api README).
   */
  sendToken?: string;
  /** The call's span (a traced run): sent as `traceparent`, so a traced app continues the trace. */
  traceParent?: string;
}

/** The `tracestate` value that carries a call's send token (W3C list member `stepline=`). */
export function sendTokenHeader(token: string): string {
  return `stepline=${Buffer.from(token, "utf8").toString("base64url")}`;
}

/** Where a function's URL sends its calls: parsed once per URL (see AppClient.targetOf). */
interface CallTarget {
  origin: string;
  /** The path and query, with `stepId=` left for last. */
  pathBeforeStepId: string;
  /** Why egress refuses the URL's literal address, if it does. */
  refused: string | null;
}

/** The answer as the app sent it, or null when it was larger than the cap. */
type Exchange = { status: number; headers: Record<string, string>; body: string } | null;

/** Distinguishes the call's own deadline from other failures. */
class CallTimeoutError extends Error {}

/** Most function URLs whose parse is kept (the set is cleared past it). */
const MAX_TARGETS = 10_000;

/** Calls apps over keep-alive connections. */
export class AppClient {
  private readonly agent: Agent;
  private readonly targets = new Map<string, CallTarget>();

  constructor(private readonly opts: AppClientOptions) {
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connect: {
        timeout: Math.min(opts.timeoutMs, 10_000),
        ...(opts.egress ? { lookup: guardedLookup(opts.egress) } : {}),
      },
    });
  }

  /** Makes one call and reports its outcome; never throws except when `signal` aborted it. */
  async call(c: AppCall): Promise<CallOutcome> {
    const target = this.targetOf(c.url);
    if (target.refused) return { kind: "failure", message: target.refused, retriable: false };
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-inngest-req-version": requestVersionHeader(c.reqVersion),
      "x-inngest-server-kind": this.opts.serverKind,
      "x-inngest-step-id": c.stepId,
    };
    if (c.sendToken) headers.tracestate = sendTokenHeader(c.sendToken);
    if (c.traceParent) headers.traceparent = c.traceParent;
    if (c.signingKey) headers["x-inngest-signature"] = signBody(c.body, c.signingKey, Date.now() / 1000);
    let res: Exchange;
    try {
      res = await this.exchange(
        target.origin,
        `${target.pathBeforeStepId}stepId=${encodeURIComponent(c.stepId)}`,
        headers,
        c.body,
        c.signal,
      );
    } catch (err) {
      if (c.signal.aborted) throw err;
      const egress = egressRefusal(err);
      if (egress) return { kind: "failure", message: egress, retriable: false };
      if (err instanceof CallTimeoutError) {
        return {
          kind: "failure",
          message: `app did not answer within ${this.opts.timeoutMs} ms`,
          retriable: true,
        };
      }
      return { kind: "failure", message: `could not call app: ${describe(err)}`, retriable: true };
    }
    if (res === null) {
      return {
        kind: "failure",
        message: `app answered more than ${this.opts.maxResponseBytes} bytes (STEPLINE_EXECUTOR_MAX_RESPONSE_BYTES)`,
        retriable: false,
      };
    }
    if (
      c.signingKey &&
      res.status !== 401 &&
      !verifySignature(res.body, res.headers["x-inngest-signature"], c.signingKey, Date.now() / 1000)
    ) {
      return {
        kind: "failure",
        message: `app answer (${res.status}) has a missing, invalid or stale x-inngest-signature (its t must be within ${SIGNATURE_MAX_SKEW_S} s of now)`,
        retriable: true,
      };
    }
    return { kind: "response", response: res };
  }

  /** Closes idle connections and waits for none to be left. */
  async close(): Promise<void> {
    await this.agent.close();
  }

  /**
   * A function URL's origin and path, with its own `stepId` parameter taken out (each call sets
   * it), and its egress verdict: a run's calls all go to one URL, so it is parsed once.
   */
  private targetOf(rawUrl: string): CallTarget {
    let target = this.targets.get(rawUrl);
    if (target) return target;
    const url = new URL(rawUrl);
    url.searchParams.delete("stepId");
    const query = url.searchParams.toString();
    target = {
      origin: url.origin,
      pathBeforeStepId: `${url.pathname}?${query ? `${query}&` : ""}`,
      refused: this.opts.egress ? literalRefusal(this.opts.egress, url) : null,
    };
    if (this.targets.size >= MAX_TARGETS) this.targets.clear();
    this.targets.set(rawUrl, target);
    return target;
  }

  /**
   * One POST through the agent's dispatcher, with the answer collected as bytes up to the cap.
   * Lower-level than undici's `request`, which wraps every call in a Readable body, an
   * AbortSignal listener and an async resource; the executor makes one call per step. Rejects
   * with the caller's abort reason, a CallTimeoutError past `timeoutMs`, or the transport's error.
   */
  private exchange(
    origin: string,
    path: string,
    headers: Record<string, string>,
    body: string,
    signal: AbortSignal,
  ): Promise<Exchange> {
    const max = this.opts.maxResponseBytes;
    return new Promise<Exchange>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      /** Why the call was stopped; applied on arrival if undici hands over its controller later. */
      let stoppedWith: Error | undefined;
      let settled = false;
      let status = 0;
      let answerHeaders: Record<string, string> = {};
      const chunks: Buffer[] = [];
      let size = 0;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        return true;
      };
      const stop = (reason: Error) => {
        stoppedWith = reason;
        controller?.abort(reason);
      };
      const onAbort = () => {
        const reason = signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason));
        if (settle()) reject(reason);
        stop(reason);
      };
      const timer = setTimeout(() => {
        const reason = new CallTimeoutError(`no answer within ${this.opts.timeoutMs} ms`);
        if (settle()) reject(reason);
        stop(reason);
      }, this.opts.timeoutMs);
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      this.agent.dispatch(
        { origin, path, method: "POST", headers, body },
        {
          onRequestStart: (c) => {
            controller = c;
            if (stoppedWith) c.abort(stoppedWith);
          },
          onResponseStart: (_c, statusCode, h) => {
            status = statusCode;
            answerHeaders = lowerHeaders(h);
          },
          onResponseData: (_c, chunk) => {
            if (settled) return;
            size += chunk.length;
            if (size > max) {
              if (settle()) resolve(null);
              stop(new Error(`answer larger than ${max} bytes`));
              return;
            }
            chunks.push(chunk);
          },
          onResponseEnd: () => {
            if (settle())
              resolve({
                status,
                headers: answerHeaders,
                body: Buffer.concat(chunks, size).toString("utf8"),
              });
          },
          onResponseError: (_c, err) => {
            if (settle()) reject(err);
          },
        },
      );
    });
  }
}

function lowerHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
  return `${typeof code === "string" ? `${code} ` : ""}${err.message}${cause}`;
}

/** The message of an egress refusal somewhere in `err`'s causes, if it is one. */
function egressRefusal(err: unknown): string | undefined {
  for (
    let e = err as { name?: string; message?: string; cause?: unknown } | undefined, depth = 0;
    e && depth < 5;
    depth++
  ) {
    if (e.name === "EgressRefusedError") return e.message;
    e = e.cause as typeof e;
  }
  return undefined;
}
