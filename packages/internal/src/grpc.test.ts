// Internal authentication (grpc.ts): with a token in use, servers refuse calls without it (unary
// and streaming alike) and the project's clients send it.
import type { ServiceDefinition, ServiceError } from "@grpc/grpc-js";
import { credentials, Metadata, makeGenericClientConstructor } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { UnauthenticatedError } from "./errors.js";
import type { GrpcServer } from "./grpc.js";
import { callUnary, createClient, startGrpcServer, unary, useInternalToken } from "./grpc.js";
import { createLogger } from "./log.js";

const json = {
  requestSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  requestDeserialize: (b: Buffer) => JSON.parse(b.toString()),
  responseSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  responseDeserialize: (b: Buffer) => JSON.parse(b.toString()),
};
const definition: ServiceDefinition = {
  echo: { path: "/test.Echo/Echo", requestStream: false, responseStream: false, ...json },
  stream: { path: "/test.Echo/Stream", requestStream: true, responseStream: true, ...json },
};
const EchoClient = makeGenericClientConstructor(definition, "Echo");
type Echo = InstanceType<typeof EchoClient> & {
  echo: (
    req: unknown,
    md: Metadata,
    opts: object,
    cb: (err: ServiceError | null, res: unknown) => void,
  ) => void;
  stream: () => NodeJS.EventEmitter & { write(v: unknown): void; end(): void };
};

const log = createLogger("grpc-test", "silent");
let server: GrpcServer | undefined;

afterEach(async () => {
  useInternalToken("");
  await server?.close(100);
});

async function serve(): Promise<string> {
  server = await startGrpcServer("127.0.0.1:0", [
    {
      definition,
      implementation: {
        echo: unary(log, async (req) => req),
        stream: (call: NodeJS.EventEmitter & { write(v: unknown): void; end(): void }) => {
          call.on("data", (v) => call.write(v));
          call.on("end", () => call.end());
        },
      },
    },
  ]);
  return `127.0.0.1:${server.port}`;
}

/** The first message or error of a stream call. */
function firstOfStream(client: Echo): Promise<unknown> {
  return new Promise((resolve) => {
    const call = client.stream();
    call.on("data", (v) => resolve(v));
    call.on("error", (err) => resolve(err));
    call.write({ n: 1 });
  });
}

describe("internal gRPC authentication", () => {
  it("refuses unary and streaming calls without the token, and takes them with it", async () => {
    useInternalToken("a-token-of-the-cluster");
    const addr = await serve();
    const bare = new EchoClient(addr, credentials.createInsecure()) as Echo;
    const wrong = new Metadata();
    wrong.set("x-stepline-token", "another-token-entirely");
    for (const md of [new Metadata(), wrong]) {
      const err = await callUnary(bare.echo.bind(bare), { n: 1 }, 5_000, md).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnauthenticatedError);
      expect((err as Error).message).toBe(
        "internal call without the cluster's token (STEPLINE_INTERNAL_TOKEN)",
      );
    }
    expect(await firstOfStream(bare)).toMatchObject({ code: 16 });
    const client = createClient(EchoClient as never, addr) as Echo;
    expect(await callUnary(client.echo.bind(client), { n: 2 })).toEqual({ n: 2 });
    expect(await firstOfStream(client)).toEqual({ n: 1 });
    bare.close();
    client.close();
  });

  it("leaves calls unauthenticated while no token is in use (dev mode)", async () => {
    const addr = await serve();
    const bare = new EchoClient(addr, credentials.createInsecure()) as Echo;
    expect(await callUnary(bare.echo.bind(bare), { n: 3 })).toEqual({ n: 3 });
    bare.close();
  });
});
