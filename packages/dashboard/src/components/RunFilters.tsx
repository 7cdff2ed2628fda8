// The runs filter. It lives in the URL query string (status, function_id, event_id, range, from, to)
// so a filtered list can be bookmarked, shared and reloaded.
import { useEffect, useState } from "preact/hooks";
import { type Fn, RUN_STATUSES, type RunFilter } from "../api";

export const RANGES = [
  { value: "15m", label: "15 min", ms: 15 * 60_000 },
  { value: "1h", label: "1 h", ms: 3_600_000 },
  { value: "24h", label: "24 h", ms: 86_400_000 },
  { value: "7d", label: "7 d", ms: 7 * 86_400_000 },
  { value: "all", label: "All", ms: 0 },
  { value: "custom", label: "Custom", ms: 0 },
] as const;

export interface FilterState {
  statuses: string[];
  functionId: string;
  eventId: string;
  range: string;
  from: string;
  to: string;
}

export function readFilter(q: URLSearchParams): FilterState {
  return {
    statuses: (q.get("status") ?? "").split(",").filter((s) => s),
    functionId: q.get("function_id") ?? "",
    eventId: q.get("event_id") ?? "",
    range: q.get("range") ?? "all",
    from: q.get("from") ?? "",
    to: q.get("to") ?? "",
  };
}

export function filterQuery(f: FilterState): Record<string, string> {
  const custom = f.range === "custom";
  return {
    status: f.statuses.join(","),
    function_id: f.functionId,
    event_id: f.eventId,
    range: f.range === "all" ? "" : f.range,
    from: custom ? f.from : "",
    to: custom ? f.to : "",
  };
}

/** The API filter; relative ranges are turned into absolute times at `now`. */
export function toApiFilter(f: FilterState, now: number): RunFilter {
  const out: RunFilter = {};
  if (f.statuses.length) out.status = f.statuses.join(",");
  if (f.functionId) out.function_id = f.functionId;
  if (f.eventId) out.event_id = f.eventId;
  const preset = RANGES.find((r) => r.value === f.range);
  if (preset && preset.ms > 0) out.started_after = new Date(now - preset.ms).toISOString();
  if (f.range === "custom") {
    // datetime-local values are local wall-clock times; half-typed ones are ignored.
    const from = new Date(f.from);
    const to = new Date(f.to);
    if (f.from && !Number.isNaN(from.getTime())) out.started_after = from.toISOString();
    if (f.to && !Number.isNaN(to.getTime())) out.started_before = to.toISOString();
  }
  return out;
}

/** "status Failed, function x, started after …" — what the confirmation dialog shows. */
export function describeFilter(f: RunFilter): string[] {
  const parts: string[] = [];
  parts.push(`Status: ${f.status ? f.status.split(",").join(", ") : "any"}`);
  parts.push(`Function: ${f.function_id ?? "any"}`);
  if (f.event_id) parts.push(`Event: ${f.event_id}`);
  if (f.started_after) parts.push(`Started after: ${new Date(f.started_after).toLocaleString()}`);
  if (f.started_before) parts.push(`Started before: ${new Date(f.started_before).toLocaleString()}`);
  if (!f.started_after && !f.started_before) parts.push("Started: any time");
  return parts;
}

interface Props {
  filter: FilterState;
  functions: Fn[];
  onChange: (f: FilterState) => void;
}

export function RunFilters({ filter, functions, onChange }: Props) {
  const [eventId, setEventId] = useState(filter.eventId);
  useEffect(() => setEventId(filter.eventId), [filter.eventId]);
  // Typing an event id applies after a short pause rather than on every key.
  useEffect(() => {
    const t = window.setTimeout(() => {
      if (eventId.trim() !== filter.eventId) onChange({ ...filter, eventId: eventId.trim() });
    }, 400);
    return () => window.clearTimeout(t);
  }, [eventId, filter, onChange]);

  const toggleStatus = (status: string, on: boolean) => {
    const set = new Set(filter.statuses);
    if (on) set.add(status);
    else set.delete(status);
    onChange({ ...filter, statuses: RUN_STATUSES.filter((s) => set.has(s)) });
  };

  return (
    <div class="filters">
      <fieldset class="chips" data-testid="filter-status">
        <legend>Status</legend>
        {RUN_STATUSES.map((s) => (
          <label key={s} class={`chip${filter.statuses.includes(s) ? " on" : ""}`}>
            <input
              type="checkbox"
              name="status"
              value={s}
              data-testid={`filter-status-${s}`}
              checked={filter.statuses.includes(s)}
              onChange={(e) => toggleStatus(s, e.currentTarget.checked)}
            />
            {s}
          </label>
        ))}
      </fieldset>
      <div class="field">
        <label for="filter-function">Function</label>
        <select
          id="filter-function"
          data-testid="filter-function"
          value={filter.functionId}
          onChange={(e) => onChange({ ...filter, functionId: e.currentTarget.value })}
        >
          <option value="">All functions</option>
          {filter.functionId && !functions.some((f) => f.id === filter.functionId) && (
            <option value={filter.functionId}>{filter.functionId}</option>
          )}
          {functions.map((f) => (
            <option key={f.id} value={f.id}>
              {f.name} ({f.id})
            </option>
          ))}
        </select>
      </div>
      <div class="field">
        <label for="filter-range">Started</label>
        <select
          id="filter-range"
          data-testid="filter-range"
          value={filter.range}
          onChange={(e) => onChange({ ...filter, range: e.currentTarget.value })}
        >
          {RANGES.map((r) => (
            <option key={r.value} value={r.value}>
              {r.value === "all" || r.value === "custom" ? r.label : `Last ${r.label}`}
            </option>
          ))}
        </select>
      </div>
      {filter.range === "custom" && (
        <>
          <div class="field">
            <label for="filter-from">From</label>
            <input
              id="filter-from"
              type="datetime-local"
              data-testid="filter-from"
              value={filter.from}
              onChange={(e) => onChange({ ...filter, from: e.currentTarget.value })}
            />
          </div>
          <div class="field">
            <label for="filter-to">To</label>
            <input
              id="filter-to"
              type="datetime-local"
              data-testid="filter-to"
              value={filter.to}
              onChange={(e) => onChange({ ...filter, to: e.currentTarget.value })}
            />
          </div>
        </>
      )}
      <div class="field">
        <label for="filter-event">Event ID</label>
        <input
          id="filter-event"
          type="search"
          placeholder="01H…"
          data-testid="filter-event"
          value={eventId}
          onInput={(e) => setEventId(e.currentTarget.value)}
        />
      </div>
    </div>
  );
}
