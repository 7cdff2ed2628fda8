// gRPC plumbing shared by every service: one way to serve handlers (errors mapped once, callback
// called exactly once) and one way to call (promises, deadlines, errors mapped back).

import type {
  ChannelOptions,
  Client,
  ServerUnaryCall,
  ServiceDefinition,
  ServiceError,
  sendUnaryData,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { credentials, Metadata, Server, ServerCredentials } from "@grpc/grpc-js";
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

/** Binds a server on `addr` (host:port) with the given services. */
export async function startGrpcServer(
  addr: string,
  services: Array<{ definition: ServiceDefinition; implementation: UntypedServiceImplementation }>,
): Promise<GrpcServer> {
  const server = new Server(CHANNEL_OPTIONS);
  for (const s of services) server.addService(s.definition, s.implementation);
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
  options?: ChannelOptions,
) => C;

/** Creates a generated client for `addr` with the project's channel options. */
export function createClient<C extends Client>(ctor: ClientCtor<C>, addr: string): C {
  return new ctor(addr, credentials.createInsecure(), CHANNEL_OPTIONS);
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
