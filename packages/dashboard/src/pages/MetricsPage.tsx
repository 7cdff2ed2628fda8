import { useMemo, useState } from "preact/hooks";
import { api, type Metrics } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { TimeSeriesChart } from "../components/TimeSeriesChart";
import { percent } from "../format";
import { useLoad } from "../hooks";
import { href, Link, navigate, useLocation } from "../router";

const RANGES = [
  { value: "1h", label: "1 h", ms: 3_600_000, bucket: 60 },
  { value: "24h", label: "24 h", ms: 86_400_000, bucket: 15 * 60 },
  { value: "7d", label: "7 d", ms: 7 * 86_400_000, bucket: 3600 },
] as const;
type Range = (typeof RANGES)[number];

/** Every bucket in the window gets a value: missing buckets had no ended runs (0 runs, no durations). */
function toSeries(metrics: Metrics, from: number, to: number) {
  const bucketMs = metrics.bucket_seconds * 1000;
  const byBucket = new Map<number, Metrics["points"][number]>();
  for (const p of metrics.points) byBucket.set(Math.floor(new Date(p.t).getTime() / bucketMs), p);
  const x: number[] = [];
  const runsPerMin: number[] = [];
  const p50: (number | null)[] = [];
  const p99: (number | null)[] = [];
  const failed: number[] = [];
  for (let b = Math.floor(from / bucketMs); b * bucketMs < to; b++) {
    const p = byBucket.get(b);
    x.push((b * bucketMs) / 1000);
    runsPerMin.push(p ? p.runs / (metrics.bucket_seconds / 60) : 0);
    p50.push(p?.p50_ms ?? null);
    p99.push(p?.p99_ms ?? null);
    failed.push(p?.failed ?? 0);
  }
  return { x, runsPerMin, p50, p99, failed };
}

function Charts({ functionId, range }: { functionId: string; range: Range }) {
  const [to, setTo] = useState(() => Date.now());
  const from = to - range.ms;
  const metrics = useLoad(
    () => api.metrics(functionId, from, to, range.bucket),
    [functionId, from, to, range.bucket],
  );
  const series = useMemo(
    () => (metrics.data ? toSeries(metrics.data.data, from, to) : null),
    [metrics.data, from, to],
  );
  const totals = (metrics.data?.data.points ?? []).reduce(
    (acc, p) => ({ runs: acc.runs + p.runs, failed: acc.failed + p.failed }),
    { runs: 0, failed: 0 },
  );
  return (
    <>
      <div class="filters">
        <p class="muted">
          {totals.runs} runs ended, {totals.failed} failed ({percent(totals.failed, totals.runs)}), in buckets
          of {range.bucket >= 3600 ? `${range.bucket / 3600} h` : `${range.bucket / 60} min`}.
        </p>
        <button type="button" onClick={() => setTo(Date.now())} disabled={metrics.loading}>
          Refresh
        </button>
      </div>
      <ErrorBanner error={metrics.error} />
      {series && (
        <div class="charts">
          <TimeSeriesChart
            title="Runs per minute"
            x={series.x}
            series={[{ label: "runs/min", color: "#3b5bdb", values: series.runsPerMin, bars: true }]}
          />
          <TimeSeriesChart
            title="Duration (ms)"
            x={series.x}
            series={[
              { label: "p50", color: "#2f9e44", values: series.p50 },
              { label: "p99", color: "#e8590c", values: series.p99 },
            ]}
          />
          <TimeSeriesChart
            title="Errors per bucket"
            x={series.x}
            integer
            series={[{ label: "failed", color: "#e03131", values: series.failed, bars: true }]}
          />
        </div>
      )}
    </>
  );
}

export function MetricsPage({ functionId }: { functionId: string }) {
  const loc = useLocation();
  const range = RANGES.find((r) => r.value === loc.query.get("range")) ?? RANGES[0];
  const fns = useLoad(() => api.functions(), []);
  const fn = fns.data?.data.find((f) => f.id === functionId);
  const base = `/functions/${encodeURIComponent(functionId)}/metrics`;
  return (
    <section>
      <div class="page-head">
        <h1>
          Metrics: {fn?.name ?? functionId} {fn && <span class="mono small muted">{fn.id}</span>}
        </h1>
        <fieldset class="segmented">
          <legend class="sr-only">Range</legend>
          {RANGES.map((r) => (
            <button
              type="button"
              key={r.value}
              data-testid={`range-${r.value}`}
              aria-pressed={r.value === range.value}
              class={r.value === range.value ? "on" : undefined}
              onClick={() => navigate(href(base, { range: r.value }), { replace: true })}
            >
              {r.label}
            </button>
          ))}
        </fieldset>
      </div>
      <p>
        <Link href="/functions">All functions</Link> ·{" "}
        <Link href={href("/runs", { function_id: functionId })}>Runs</Link>
      </p>
      <ErrorBanner error={fns.error && `Could not load functions: ${fns.error}`} />
      <Charts key={range.value} functionId={functionId} range={range} />
    </section>
  );
}
