// A thin Preact wrapper over uPlot: builds the chart once, feeds it new data, and follows its
// container's width so it fits both wide and narrow windows.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  color: string;
  values: (number | null)[];
  bars?: boolean;
}

interface Props {
  title: string;
  /** Bucket start times in epoch seconds. */
  x: number[];
  series: ChartSeries[];
  /** Counts: ticks only at whole numbers. */
  integer?: boolean;
  height?: number;
}

/** Line series mark every point when there is room for them (≥ this many CSS px per value in view)… */
const POINT_SPACING = 12;

function valuesInView(u: uPlot, seriesIdx: number, i0: number, i1: number): number {
  const ys = u.data[seriesIdx] ?? [];
  let n = 0;
  for (let i = i0; i <= i1; i++) if (ys[i] != null) n++;
  return n;
}

const showAllPoints: uPlot.Series.Points.Show = (u, seriesIdx, i0, i1) =>
  valuesInView(u, seriesIdx, i0, i1) * POINT_SPACING <= u.width;

/** …and otherwise still mark lone values (no value on either side), which a line alone cannot draw. */
const lonePoints: uPlot.Series.Points.Filter = (u, seriesIdx, show) => {
  if (show) return null;
  const ys = u.data[seriesIdx] ?? [];
  const idxs = u.series[0]?.idxs;
  const i0 = idxs?.[0] ?? 0;
  const i1 = idxs?.[1] ?? ys.length - 1;
  const lone: number[] = [];
  for (let i = i0; i <= i1; i++) {
    if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) lone.push(i);
  }
  return lone.length > 0 ? lone : null;
};

function buildOptions(props: Props, width: number): uPlot.Options {
  const bars = uPlot.paths.bars?.({ size: [0.7, 40] });
  return {
    width,
    height: props.height ?? 200,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    axes: [
      { stroke: "#6b7280", grid: { stroke: "#eef0f3" } },
      {
        stroke: "#6b7280",
        grid: { stroke: "#eef0f3" },
        size: 56,
        incrs: props.integer ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] : undefined,
        values: (_u, ticks) => ticks.map((v) => String(+v.toFixed(2))),
      },
    ],
    series: [
      {},
      ...props.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: s.bars ? 1 : 2,
        fill: s.bars ? `${s.color}99` : undefined,
        paths: s.bars ? bars : undefined,
        spanGaps: false,
        points: s.bars
          ? { show: false }
          : { show: showAllPoints, filter: lonePoints, size: 6, fill: s.color },
      })),
    ],
  };
}

export function TimeSeriesChart(props: Props) {
  const holder = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const data: uPlot.AlignedData = [props.x, ...props.series.map((s) => s.values)];

  // Rebuilt when the set of series changes; plain data changes go through setData below.
  const shape = props.series.map((s) => s.label).join("|");
  useEffect(() => {
    const el = holder.current;
    if (!el) return;
    const plot = new uPlot(buildOptions(props, Math.max(el.clientWidth, 200)), data, el);
    chart.current = plot;
    const observer = new ResizeObserver(() => {
      plot.setSize({ width: Math.max(el.clientWidth, 200), height: props.height ?? 200 });
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
      chart.current = null;
    };
  }, [shape]);

  useEffect(() => {
    chart.current?.setData(data);
  });

  return (
    <figure class="card chart" data-testid="metrics-chart">
      <figcaption>{props.title}</figcaption>
      <div ref={holder} class="chart-canvas" />
    </figure>
  );
}
