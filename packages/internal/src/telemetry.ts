// OpenTelemetry traces: one trace per run, from the event's POST through runner, queue, executor,
// the app call and history (docs/telemetry.md). Off unless an OTLP endpoint is configured; when
// off, every helper here returns at once without touching the OpenTelemetry API.
//
// Services never import @opentelemetry/* themselves: spans are made only through `withSpan` and
// `recordSpan`, and trace context crosses process boundaries as a W3C `traceparent` string (in
// Kafka headers, gRPC fields, queue items and run state), never as an implicit context.

import {
  type Context,
  type ContextManager,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
// Type only: the SDK (and its exporters) is loaded only when tracing is on.
import type { NodeSDK } from "@opentelemetry/sdk-node";

/** A W3C `traceparent` header value of a sampled span; "" = not traced. */
export type TraceParent = string;

export { SpanKind };

/** Span attributes (OpenTelemetry's own type is not exposed to services). */
export type SpanAttributes = Record<string, string | number | boolean>;

const TRACER = "stepline";
let sdk: NodeSDK | undefined;

/** Whether this process exports traces (startTelemetry found an OTLP endpoint). */
export function tracingEnabled(): boolean {
  return sdk !== undefined;
}

/**
 * Starts trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
 * is set (and `OTEL_SDK_DISABLED` is not "true"). Every other setting is OpenTelemetry's own
 * variable: `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_TRACES_SAMPLER`(`_ARG`), `OTEL_BSP_*`,
 * `OTEL_RESOURCE_ATTRIBUTES`. Metrics stay on the Prometheus admin port, so no OTel metrics or
 * logs are exported. No auto-instrumentation: the spans are the ones this module makes.
 * `env` is the process's environment (the OpenTelemetry SDK reads its own variables from it too).
 * Returns the shutdown, which flushes what is buffered and never rejects (a collector that is
 * down must not hold up or fail a service's exit: it gives up after `SHUTDOWN_TIMEOUT_MS`).
 */
export async function startTelemetry(
  serviceName: string,
  env: NodeJS.ProcessEnv,
): Promise<() => Promise<void>> {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const disabled = (env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() === "true";
  if (!endpoint || disabled || sdk) return async () => {};
  const { NodeSDK } = await import("@opentelemetry/sdk-node");
  const started = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || serviceName,
    contextManager: new ExplicitContextManager(),
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  started.start();
  sdk = started;
  return async () => {
    sdk = undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, SHUTDOWN_TIMEOUT_MS);
    });
    await Promise.race([started.shutdown().catch(() => undefined), timeout]);
    clearTimeout(timer);
  };
}

const SHUTDOWN_TIMEOUT_MS = 5_000;

/**
 * No ambient context: every parent is passed explicitly (a traceparent string), so the SDK's
 * default AsyncLocalStorage context manager would only tax every promise of the process (it cost
 * about a quarter of the throughput in `npm run bench`, even with 1 % of traces sampled).
 */
class ExplicitContextManager implements ContextManager {
  active(): Context {
    return ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    _context: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return fn.call(thisArg, ...args);
  }
  bind<T>(_context: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    return this;
  }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The context of a `traceparent` (parsed here rather than by the configured propagator: Stepline
 * always carries W3C trace context between its own parts, whatever `OTEL_PROPAGATORS` says).
 * A malformed value starts a new trace.
 */
function parentContext(parent: TraceParent): Context {
  const m = TRACEPARENT.exec(parent);
  if (!m) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[1] as string,
    spanId: m[2] as string,
    traceFlags: Number.parseInt(m[3] as string, 16),
    isRemote: true,
  });
}

/** The `traceparent` of a span, or "" when it is not recorded (not sampled, or no exporter). */
function traceParentOf(span: Span): TraceParent {
  if (!span.isRecording()) return "";
  const sc = span.spanContext();
  if ((sc.traceFlags & 1) === 0) return "";
  return `00-${sc.traceId}-${sc.spanId}-01`;
}

/**
 * A traceparent that says "not sampled", for work an untraced run starts elsewhere (the events it
 * sends): passed on, it keeps that work untraced instead of letting it start traces of its own.
 */
export function unsampledParent(): TraceParent {
  // Math.random, as OpenTelemetry's own id generator: ids need to be unique, not secret, and this
  // runs once per app call of every untraced run.
  return `00-${randomHex(32)}-${randomHex(16)}-00`;
}

function randomHex(digits: number): string {
  let out = "";
  while (out.length < digits)
    out += Math.floor(Math.random() * 0x100000000)
      .toString(16)
      .padStart(8, "0");
  return out.slice(0, digits);
}

/** What `withSpan` hands its callback: the span's context to pass on, and a way to annotate it. */
export interface SpanHandle {
  /** Pass this on as the parent of the work the span starts ("" = not traced). */
  readonly traceParent: TraceParent;
  setAttributes(attributes: SpanAttributes): void;
}

const UNTRACED: SpanHandle = { traceParent: "", setAttributes: () => {} };

export interface SpanOptions {
  /**
   * The parent's `traceparent`. "" = the run or event is not traced: no span is made (so a run
   * that was not sampled at its root costs nothing downstream). undefined = a new trace's root,
   * sampled by `OTEL_TRACES_SAMPLER` (only at the edges where work enters Stepline).
   */
  parent: TraceParent | undefined;
  kind?: SpanKind;
  attributes?: SpanAttributes;
  /** Epoch ms the span began, when it began before the call (a queue wait, say). */
  startMs?: number;
}

/** Starts a span under `opts.parent` (a new trace's root when undefined). */
function startSpan(name: string, opts: SpanOptions, startMs: number | undefined): Span {
  const parentCtx = opts.parent === undefined ? ROOT_CONTEXT : parentContext(opts.parent);
  return trace
    .getTracer(TRACER)
    .startSpan(
      name,
      { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes, startTime: startMs },
      parentCtx,
    );
}

/**
 * Runs `fn` inside a span. `fn` receives a handle (an untraced one when no span is made) to pass
 * the span's `traceParent` on and add attributes. A throw marks the span as an error and is rethrown.
 */
export async function withSpan<T>(
  name: string,
  opts: SpanOptions,
  fn: (span: SpanHandle) => Promise<T>,
): Promise<T> {
  if (!sdk || opts.parent === "") return fn(UNTRACED);
  const span = startSpan(name, opts, opts.startMs);
  if (!span.isRecording()) {
    span.end();
    return fn(UNTRACED);
  }
  const handle: SpanHandle = {
    traceParent: traceParentOf(span),
    setAttributes: (a) => span.setAttributes(a),
  };
  try {
    return await fn(handle);
  } catch (err) {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Records a span that has already happened (from `startMs` to `endMs`, epoch ms): a queue wait,
 * or a step the SDK ran between two checkpoints. Returns its `traceparent` ("" when none is made).
 */
export function recordSpan(
  name: string,
  opts: SpanOptions & { endMs: number; error?: string | undefined },
): TraceParent {
  if (!sdk || opts.parent === "") return "";
  const span = startSpan(name, opts, opts.startMs ?? opts.endMs);
  if (opts.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: opts.error });
  const traceParent = traceParentOf(span); // before end: an ended span is no longer recording
  span.end(opts.endMs);
  return traceParent;
}
