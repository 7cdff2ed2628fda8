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
        points: { show: false },
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
