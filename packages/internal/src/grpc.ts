// gRPC plumbing shared by every service: one way to serve handlers (errors mapped once, callback
// called exactly once) and one way to call (promises, deadlines, errors mapped back).
//
// Internal calls are authenticated with a shared token (STEPLINE_INTERNAL_TOKEN, docs/architecture.md
// "Internal gRPC"): once a process calls `useInternalToken`, its clients send the token in the
// `x-stepline-token` metadata of every call, and its servers refuse any call without it
// (UNAUTHENTICATED). mTLS is the production option for encrypting the traffic as well.
import { timingSafeEqual } from "node:crypto";

import type {
  ChannelOptions,
  Client,
  Interceptor,
  ServerUnaryCall,
  ServiceDefinition,
  ServiceError,
  sendUnaryData,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { credentials, InterceptingCall, Metadata, Server, ServerCredentials, status } from "@grpc/grpc-js";
import { fromGrpcError, toGrpcError } from "./errors.js";
import type { Logger } from "./log.js";

const CHANNEL_OPTIONS: ChannelOptions = {
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.max_send_message_length": 16 * 1024 * 1024,
  // grpc-js backs off up to 120 s between reconnects by default; services restart in about a
  // second, so peers should notice within a second too.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
};

/**
 * Wraps an async handler as a grpc-js unary handler: a thrown error of the closed set becomes its
 * status; anything else is logged and answered INTERNAL with the message hidden.
 */
export function unary<Req, Res>(
  log: Logger,
  handler: (req: Req, metadata: Metadata) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    handler(call.request, call.metadata).then(
      (res) => callback(null, res),
      (err: unknown) => {
        const mapped = toGrpcError(err);
        if (mapped.code === 13) log.error({ err, path: call.getPath() }, "grpc handler failed");
        callback(mapped as ServiceError, null);
      },
    );
  };
}

export interface GrpcServer {
  /** The bound port (useful with port 0). */
  port: number;
  /** Stops accepting calls, waits for in-flight ones up to `graceMs`, then forces. */
  close(graceMs?: number): Promise<void>;
}

const TOKEN_HEADER = "x-stepline-token";
let internalToken = "";

/**
 * Turns internal authentication on for this process: clients created afterwards send `token`,
 * servers started afterwards require it. An empty token leaves calls unauthenticated (dev mode).
 */
export function useInternalToken(token: string): void {
  internalToken = token;
}

function tokenMatches(metadata: Metadata, token: string): boolean {
  const given = Buffer.from(String(metadata.get(TOKEN_HEADER)[0] ?? ""));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

const UNAUTHENTICATED = {
  code: status.UNAUTHENTICATED,
  details: "internal call without the cluster's token (STEPLINE_INTERNAL_TOKEN)",
  metadata: new Metadata(),
};

type AnyHandler = (
  call: { metadata: Metadata; emit(e: string, v: unknown): boolean },
  cb?: (e: unknown) => void,
) => void;

/** Wraps every handler of a service so a call without `token` is refused before it runs. */
function requireToken(
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  token: string,
): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const streaming = definition[name]?.requestStream || definition[name]?.responseStream;
    const h = handler as unknown as AnyHandler;
    const wrapped: AnyHandler = (call, callback) => {
      if (tokenMatches(call.metadata, token)) return h(call, callback);
      if (streaming) call.emit("error", UNAUTHENTICATED);
      else callback?.(UNAUTHENTICATED);
    };
    out[name] = wrapped as unknown as UntypedServiceImplementation[string];
  }
  return out;
}

/** Adds the internal token to every call of a client (read when the call starts). */
const sendToken: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      if (internalToken) metadata.set(TOKEN_HEADER, internalToken);
      next(metadata, listener);
    },
  });

/** Binds a server on `addr` (host:port) with the given services (requiring the internal token, if set). */
export async function startGrpcServer(
  addr: string,
  services: Array<{ definition: ServiceDefinition; implementation: UntypedServiceImplementation }>,
): Promise<GrpcServer> {
  const server = new Server(CHANNEL_OPTIONS);
  const token = internalToken;
  for (const s of services) {
    server.addService(
      s.definition,
      token ? requireToken(s.definition, s.implementation, token) : s.implementation,
    );
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port,
    close: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

type ClientCtor<C> = new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: ChannelOptions & { interceptors?: Interceptor[] },
) => C;

/** Creates a generated client for `addr` with the project's channel options and the internal token. */
export function createClient<C extends Client>(ctor: ClientCtor<C>, addr: string): C {
  return new ctor(addr, credentials.createInsecure(), { ...CHANNEL_OPTIONS, interceptors: [sendToken] });
}

type UnaryMethod<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: { deadline: Date },
  callback: (err: ServiceError | null, res: Res) => void,
) => unknown;

/**
 * Calls a unary method with a deadline and maps a failure to the closed error set.
 * Usage: `await callUnary(client.getRun.bind(client), req)`.
 */
export function callUnary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  req: Req,
  deadlineMs = 10_000,
  metadata?: Metadata,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method(req, metadata ?? new Metadata(), { deadline: new Date(Date.now() + deadlineMs) }, (err, res) =>
      err ? reject(fromGrpcError(err)) : resolve(res),
    );
  });
}
