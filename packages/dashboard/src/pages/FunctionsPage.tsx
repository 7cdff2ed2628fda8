import { useState } from "preact/hooks";
import { api, type Fn, type PeriodStats } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { InvokeDialog } from "../components/InvokeDialog";
import { summarizeFlow, triggerLabel } from "../flow";
import { percent } from "../format";
import { useAction, useLoad } from "../hooks";
import { href, Link } from "../router";

function Stats({ stats }: { stats: PeriodStats }) {
  return (
    <span class="nowrap">
      {stats.runs} runs
      {stats.runs > 0 && (
        <span class={stats.failed > 0 ? "text-error" : "muted"}>
          {" "}
          · {percent(stats.failed, stats.runs)} failed
        </span>
      )}
    </span>
  );
}

function Triggers({ fn }: { fn: Fn }) {
  return (
    <ul class="tags">
      {fn.triggers.map((t) => {
        const label = triggerLabel(t);
        return (
          <li key={`${label.kind}:${label.text}`} class={`tag tag-${label.kind}`} title={label.title}>
            {label.kind === "cron" ? `cron ${label.text}` : label.text}
          </li>
        );
      })}
    </ul>
  );
}

interface RowProps {
  fn: Fn;
  onChanged: (fn: Fn) => void;
  onInvoke: (fn: Fn) => void;
}

function FunctionRow({ fn, onChanged, onInvoke }: RowProps) {
  const action = useAction();
  const toggle = async () => {
    const answer = await action.run(() => (fn.paused ? api.resumeFunction(fn.id) : api.pauseFunction(fn.id)));
    if (answer) onChanged({ ...fn, paused: answer.data.paused });
  };
  const flow = summarizeFlow(fn.flow, fn.retries);
  return (
    <tr data-testid="function-row" data-function-id={fn.id}>
      <td>
        <strong class="nowrap">{fn.name}</strong>
        <div class="mono muted small">{fn.id}</div>
      </td>
      <td>{fn.app_id}</td>
      <td>
        <Triggers fn={fn} />
      </td>
      <td class="small">{flow.length ? flow.join(", ") : <span class="muted">—</span>}</td>
      <td>
        <Stats stats={fn.stats.hour} />
      </td>
      <td>
        <Stats stats={fn.stats.day} />
      </td>
      <td>
        {fn.paused ? (
          <span class="badge status-paused">Paused</span>
        ) : (
          <span class="badge status-active">Active</span>
        )}
        {action.error && (
          <div class="text-error small" role="alert" data-testid="error-banner">
            {action.error}
          </div>
        )}
      </td>
      <td>
        <div class="row-actions">
          {fn.paused ? (
            <button type="button" data-testid="resume-button" disabled={action.busy} onClick={toggle}>
              Resume
            </button>
          ) : (
            <button type="button" data-testid="pause-button" disabled={action.busy} onClick={toggle}>
              Pause
            </button>
          )}
          <button type="button" data-testid="invoke-button" onClick={() => onInvoke(fn)}>
            Invoke
          </button>
          <Link href={`/functions/${encodeURIComponent(fn.id)}/metrics`} testid="metrics-link">
            Metrics
          </Link>
          <Link href={href("/runs", { function_id: fn.id })} testid="runs-link">
            Runs
          </Link>
        </div>
      </td>
    </tr>
  );
}

export function FunctionsPage() {
  const fns = useLoad(() => api.functions(), []);
  const [overrides, setOverrides] = useState<Record<string, Fn>>({});
  const [invoking, setInvoking] = useState<Fn | null>(null);
  const list = (fns.data?.data ?? []).map((fn) => overrides[fn.id] ?? fn);
  return (
    <section>
      <div class="page-head">
        <h1>Functions</h1>
        <button type="button" onClick={() => void fns.reload().then(() => setOverrides({}))}>
          Refresh
        </button>
      </div>
      <ErrorBanner error={fns.error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>App</th>
              <th>Triggers</th>
              <th>Flow control</th>
              <th>Last hour</th>
              <th>Last day</th>
              <th>State</th>
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {!fns.loading && !fns.error && list.length === 0 && (
              <tr>
                <td colSpan={8} class="empty">
                  No functions. Sync an app on the <Link href="/apps">Apps</Link> page.
                </td>
              </tr>
            )}
            {list.map((fn) => (
              <FunctionRow
                key={fn.id}
                fn={fn}
                onChanged={(changed) => setOverrides((o) => ({ ...o, [changed.id]: changed }))}
                onInvoke={setInvoking}
              />
            ))}
          </tbody>
        </table>
      </div>
      {invoking && <InvokeDialog fn={invoking} onClose={() => setInvoking(null)} />}
    </section>
  );
}
