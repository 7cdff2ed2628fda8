import { api, type Skip } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { JsonBlock } from "../components/JsonBlock";
import { RunsTable } from "../components/RunsTable";
import { formatTime } from "../format";
import { useInterval, useLoad } from "../hooks";
import { href, Link } from "../router";

function SkipsTable({ skips }: { skips: Skip[] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th>Function</th>
            <th>Reason</th>
            <th>When</th>
            <th>Detail</th>
          </tr>
        </thead>
        <tbody>
          {skips.map((s) => (
            <tr key={`${s.function_id}:${s.skipped_at}`} data-testid="skip-row">
              <td>{s.function_id}</td>
              <td>
                <strong>{s.reason}</strong>
              </td>
              <td class="nowrap">{formatTime(s.skipped_at)}</td>
              <td class="mono small">
                {s.detail === null || s.detail === undefined ? "—" : JSON.stringify(s.detail)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function EventPage({ eventId }: { eventId: string }) {
  const event = useLoad(() => api.event(eventId), [eventId]);
  const runs = useLoad(() => api.eventRuns(eventId), [eventId]);
  const skips = useLoad(() => api.eventSkips(eventId), [eventId]);
  const anyRunning = (runs.data?.data ?? []).some((r) => r.status === "Running");
  // Runs an event starts show up a moment after it is received, and their statuses change; keep fresh.
  useInterval(
    () => {
      void runs.reload();
      void skips.reload();
    },
    2000,
    anyRunning || (runs.data?.data.length ?? 0) === 0,
  );
  const e = event.data?.data;
  return (
    <section>
      <div class="page-head">
        <h1>
          Event <span class="mono small">{eventId}</span>
        </h1>
        <Link href="/events">All events</Link>
      </div>
      <ErrorBanner error={event.error} />
      {e && (
        <div class="card">
          <dl class="facts">
            <dt>Name</dt>
            <dd data-testid="event-name">
              <Link href={href("/events", { name: e.name })}>{e.name}</Link>
            </dd>
            <dt>ID</dt>
            <dd class="mono">{e.id}</dd>
            <dt>Received</dt>
            <dd>{formatTime(e.received_at)}</dd>
            {e.ts ? (
              <>
                <dt>Event time (ts)</dt>
                <dd>{formatTime(new Date(e.ts).toISOString())}</dd>
              </>
            ) : null}
            {e.v ? (
              <>
                <dt>Version</dt>
                <dd>{e.v}</dd>
              </>
            ) : null}
          </dl>
          <h2>Payload</h2>
          <JsonBlock
            testid="event-payload"
            value={{ name: e.name, data: e.data, ...(e.user ? { user: e.user } : {}), id: e.id, ts: e.ts }}
          />
        </div>
      )}
      <h2>Runs started</h2>
      <ErrorBanner error={runs.error} />
      {runs.data && (
        <RunsTable runs={runs.data.data} empty="This event has not started any runs." showEvent={false} />
      )}
      <h2>Skipped functions</h2>
      <ErrorBanner error={skips.error} />
      {skips.data &&
        (skips.data.data.length ? (
          <SkipsTable skips={skips.data.data} />
        ) : (
          <p class="muted">No function skipped this event.</p>
        ))}
    </section>
  );
}
