import type { Run } from "../api";
import { durationBetween, formatDuration, formatTime } from "../format";
import { Link, navigate } from "../router";
import { StatusBadge } from "./StatusBadge";

interface Props {
  runs: Run[];
  empty: string;
  /** Shows the trigger event column (not needed on the event's own page). */
  showEvent?: boolean;
}

/** Clicking anywhere on a row opens the run, unless the click was on a link or button inside it. */
function openRow(e: MouseEvent, runId: string) {
  const target = e.target as HTMLElement;
  if (target.closest("a, button, input, select, textarea")) return;
  navigate(`/runs/${encodeURIComponent(runId)}`);
}

export function RunsTable({ runs, empty, showEvent = true }: Props) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th>Status</th>
            <th>Run</th>
            <th>Function</th>
            <th>Started</th>
            <th>Duration</th>
            {showEvent && <th>Event</th>}
          </tr>
        </thead>
        <tbody>
          {runs.length === 0 && (
            <tr>
              <td colSpan={showEvent ? 6 : 5} class="empty">
                {empty}
              </td>
            </tr>
          )}
          {runs.map((run) => (
            // The whole row is clickable for the mouse; the run id link is the keyboard path.
            <tr
              key={run.run_id}
              class="clickable"
              data-testid="run-row"
              onClick={(e) => openRow(e, run.run_id)}
            >
              <td>
                <StatusBadge status={run.status} />
              </td>
              <td class="mono">
                <Link href={`/runs/${encodeURIComponent(run.run_id)}`}>{run.run_id}</Link>
              </td>
              <td>{run.function_id}</td>
              <td class="nowrap">{formatTime(run.run_started_at)}</td>
              <td class="nowrap">{formatDuration(durationBetween(run.run_started_at, run.ended_at))}</td>
              {showEvent && (
                <td class="mono">
                  <Link href={`/events/${encodeURIComponent(run.event_id)}`}>{run.event_id}</Link>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
