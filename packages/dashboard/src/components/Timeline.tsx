// The run timeline: each step attempt is a bar on one time axis that spans the run (or up to now while
// it runs). Bars and labels are buttons, so a step can be picked by mouse or keyboard.
import type { Run, Step } from "../api";
import { formatDuration } from "../format";

interface Props {
  run: Run;
  steps: Step[];
  now: number;
  selected: number | null;
  onSelect: (index: number) => void;
}

const TICKS = [0, 0.25, 0.5, 0.75, 1];

function ms(iso: string | null | undefined, fallback: number): number {
  if (!iso) return fallback;
  const t = new Date(iso).getTime();
  return Number.isNaN(t) ? fallback : t;
}

function span(run: Run, steps: Step[], now: number): { start: number; end: number } {
  const start = ms(run.run_started_at, now);
  let end = ms(run.ended_at, now);
  for (const s of steps) end = Math.max(end, ms(s.ended_at, end), ms(s.started_at, end));
  return { start, end: Math.max(end, start + 1) };
}

function stepLabel(step: Step): string {
  return step.attempt > 0 ? `${step.name} (attempt ${step.attempt + 1})` : step.name;
}

export function Timeline({ run, steps, now, selected, onSelect }: Props) {
  const { start, end } = span(run, steps, now);
  const total = end - start;
  const place = (from: number, to: number) => {
    const left = ((from - start) / total) * 100;
    const width = Math.max(((to - from) / total) * 100, 0.4);
    return { left: `${Math.min(Math.max(left, 0), 99.6)}%`, width: `${Math.min(width, 100 - left)}%` };
  };
  const runEnd = ms(run.ended_at, now);
  return (
    <div class="timeline" data-testid="timeline">
      <div class="tl-row tl-axis" aria-hidden="true">
        <div class="tl-label" />
        <div class="tl-track">
          {TICKS.map((t) => (
            <span key={t} class="tl-tick" style={{ left: `${t * 100}%` }}>
              +{formatDuration(total * t)}
            </span>
          ))}
        </div>
      </div>
      <div class="tl-row">
        <div class="tl-label">
          <strong>Run</strong>
        </div>
        <div class="tl-track">
          <div
            class={`tl-bar status-${run.status.toLowerCase()}`}
            style={place(start, runEnd)}
            title={`${run.status}, ${formatDuration(runEnd - start)}`}
          />
        </div>
      </div>
      {steps.length === 0 && <p class="muted">No steps yet.</p>}
      {steps.map((step, i) => {
        const from = ms(step.started_at, start);
        const to = ms(step.ended_at, run.ended_at ? runEnd : now);
        const label = stepLabel(step);
        const isSelected = selected === i;
        return (
          <div key={`${step.step_id}:${step.attempt}:${i}`} class={`tl-row${isSelected ? " selected" : ""}`}>
            <button
              type="button"
              class="tl-label link-button"
              data-testid="timeline-row"
              aria-pressed={isSelected}
              onClick={() => onSelect(i)}
              title={label}
            >
              <span class={`dot status-${step.status.toLowerCase()}`} />
              {label}
            </button>
            <div class="tl-track">
              <button
                type="button"
                class={`tl-bar status-${step.status.toLowerCase()}`}
                style={place(from, to)}
                data-testid="timeline-bar"
                data-status={step.status}
                data-name={step.name}
                data-attempt={step.attempt}
                aria-label={`${label}: ${step.status}, ${formatDuration(to - from)}`}
                title={`${label}: ${step.status}, ${formatDuration(to - from)}`}
                onClick={() => onSelect(i)}
              />
            </div>
          </div>
        );
      })}
      <ul class="tl-legend">
        {["Completed", "Errored", "Failed", "Sleeping", "Waiting", "Invoking"].map((s) => (
          <li key={s}>
            <span class={`dot status-${s.toLowerCase()}`} />
            {s === "Errored" ? "Errored (retried)" : s}
          </li>
        ))}
      </ul>
    </div>
  );
}
