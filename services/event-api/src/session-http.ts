// Sign-in for the dashboard (production mode): `POST|GET|DELETE /v1/session`, the session cookie,
// and the hook that finds a request's session and holds cookie-borne writes to the CSRF token.
// Requests with a signing key never consult the cookie, and so need no CSRF token; the SDK's
// checkpoint endpoint ignores cookies altogether.

import { createHash, timingSafeEqual } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { UnavailableError, ValidationError } from "@stepline/internal/errors";
import type { Logger } from "@stepline/internal/log";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { parseJsonBody } from "./events.js";
import type { Session, SignInResult } from "./users.js";

export const SESSION_COOKIE = "stepline_session";

/** What sign-in needs of the user store (UserStore, over Redis). */
export interface SessionStore {
  readonly absoluteMs: number;
  signIn(username: string, password: string, addr: string): Promise<SignInResult>;
  touchSession(token: string): Promise<Session | null>;
  endSession(token: string): Promise<boolean>;
}

export interface SessionHttpDeps {
  store: SessionStore;
  log: Logger;
  /** True when the request carries a signing key (`Authorization: Bearer ...`). */
  hasSigningKey(req: FastifyRequest): boolean;
}

const WRONG = "wrong username or password";
const NOT_SIGNED_IN = "not signed in";
const BAD_CSRF = "missing or wrong X-CSRF-Token";

/** The live session the hook found for a request (none for key-based and cookieless ones). */
const found = new WeakMap<FastifyRequest, Session>();

/** The request's live session, or null. */
export function sessionOf(req: FastifyRequest): Session | null {
  return found.get(req) ?? null;
}

/** Who is signed in on this request (what `GET /v1/settings` reports), or null. */
export function signedInAs(req: FastifyRequest): string | null {
  return found.get(req)?.username ?? null;
}

/** Registers the session hook and routes; call before the /v1 routes. */
export function registerSessions(app: FastifyInstance, deps: SessionHttpDeps): void {
  const { store } = deps;
  const log = deps.log.child({ component: "sessions" });
  const storeCall = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      log.warn({ err: (err as Error).message }, "session store call failed");
      throw new UnavailableError("the session store is unavailable; retry later");
    }
  };

  app.addHook("onRequest", async (req, reply) => {
    const path = req.url.split("?")[0] ?? "";
    if (!path.startsWith("/v1/") || path.startsWith("/v1/checkpoint/") || deps.hasSigningKey(req)) return;
    const token = cookieOf(req, SESSION_COOKIE);
    if (!token) return;
    const session = await storeCall(() => store.touchSession(token));
    if (!session) return;
    found.set(req, session);
    // A browser sends the cookie with any request to this site; only our own page knows the token.
    // Signing in again needs none: the old session is replaced, and sign-in takes JSON only.
    const write = req.method !== "GET" && req.method !== "HEAD" && req.method !== "OPTIONS";
    const signingIn = req.method === "POST" && path === "/v1/session";
    if (write && !signingIn && !sameSecret(headerOf(req, "x-csrf-token"), session.csrfToken)) {
      return reply.status(403).send({ error: BAD_CSRF, status: 403 });
    }
  });

  app.post("/v1/session", async (req, reply) => {
    // A cross-site form can post text/plain or urlencoded bodies but never application/json, so
    // no other site can sign a visitor in to an account of its choosing.
    const type = (headerOf(req, "content-type").split(";")[0] ?? "").trim().toLowerCase();
    if (type !== "application/json") {
      return reply
        .status(415)
        .send({ error: 'send JSON with "Content-Type: application/json"', status: 415 });
    }
    const body = parseJsonBody(req.body as Buffer | undefined) as { username?: unknown; password?: unknown };
    if (!body || typeof body.username !== "string" || typeof body.password !== "string") {
      throw new ValidationError('the body must be {"username": "...", "password": "..."}');
    }
    const { username, password } = body;
    const result = await storeCall(() => store.signIn(username, password, req.ip));
    void reply.header("cache-control", "no-store");
    if (result.kind === "limited") {
      const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
      log.warn({ addr: req.ip }, "sign-in refused: too many failures");
      return reply
        .status(429)
        .header("retry-after", String(seconds))
        .send({
          error: `too many failed sign-ins; try again in ${Math.ceil(seconds / 60)} minutes`,
          status: 429,
        });
    }
    if (result.kind === "wrong") {
      log.info({ addr: req.ip }, "sign-in failed");
      return reply.status(401).send({ error: WRONG, status: 401 });
    }
    const old = cookieOf(req, SESSION_COOKIE);
    if (old) await storeCall(() => store.endSession(old));
    log.info({ user: result.session.username, accountId: result.session.accountId }, "signed in");
    setCookie(req, reply, result.token, Math.floor(store.absoluteMs / 1000));
    return reply.send({ data: sessionView(result.session) });
  });

  app.get("/v1/session", async (req, reply) => {
    void reply.header("cache-control", "no-store");
    const session = sessionOf(req);
    if (session) return reply.send({ data: sessionView(session) });
    // A cookie that outlived its session is of no use to the browser: drop it.
    if (cookieOf(req, SESSION_COOKIE)) setCookie(req, reply, "", 0);
    return reply.status(401).send({ error: NOT_SIGNED_IN, status: 401 });
  });

  app.delete("/v1/session", async (req, reply) => {
    const token = cookieOf(req, SESSION_COOKIE);
    if (token) await storeCall(() => store.endSession(token));
    const session = sessionOf(req);
    if (session) log.info({ user: session.username }, "signed out");
    setCookie(req, reply, "", 0);
    return reply.send({ data: { signed_out: true } });
  });
}

function sessionView(s: Session) {
  return { user: s.username, account_id: s.accountId, csrf_token: s.csrfToken };
}

/** Sets (or, with maxAge 0, clears) the session cookie; Secure when the request came over https. */
function setCookie(req: FastifyRequest, reply: FastifyReply, token: string, maxAgeS: number): void {
  const proto = (headerOf(req, "x-forwarded-proto").split(",")[0] ?? "").trim().toLowerCase();
  const secure = proto === "https" || (req.raw.socket as TLSSocket).encrypted === true;
  const attrs = [`${SESSION_COOKIE}=${token}`, "Path=/", "HttpOnly", "SameSite=Strict", `Max-Age=${maxAgeS}`];
  if (secure) attrs.push("Secure");
  void reply.header("set-cookie", attrs.join("; "));
}

/** One cookie's value from the Cookie header (the first, if a name repeats), or "". */
export function cookieOf(req: FastifyRequest, name: string): string {
  for (const part of headerOf(req, "cookie").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return "";
}

/** Compares two secrets in constant time (hashing first evens out their lengths). */
function sameSecret(given: string, expected: string): boolean {
  if (!given || !expected) return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

function headerOf(req: FastifyRequest, name: string): string {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
}
