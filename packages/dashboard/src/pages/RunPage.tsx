import { useState } from "preact/hooks";
import { api, type Run, type Step } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { ErrorDetails } from "../components/ErrorDetails";
import { JsonBlock } from "../components/JsonBlock";
import { StatusBadge } from "../components/StatusBadge";
import { Timeline } from "../components/Timeline";
import { durationBetween, formatDuration, formatTime } from "../format";
import { useAction, useInterval, useLoad } from "../hooks";
import { href, Link, navigate } from "../router";

async function loadRun(id: string): Promise<{ run: Run; steps: Step[] }> {
  const [run, steps] = await Promise.all([api.run(id), api.runSteps(id)]);
  return { run: run.data, steps: steps.data };
}

function StepDetail({ step }: { step: Step }) {
  return (
    <div class="card step-detail" data-testid="step-detail">
      <h3>
        {step.name} <StatusBadge status={step.status} />
      </h3>
      <dl class="facts">
        <dt>Step ID</dt>
        <dd class="mono">{step.step_id}</dd>
        <dt>Attempt</dt>
        <dd>{step.attempt + 1}</dd>
        <dt>Started</dt>
        <dd>{formatTime(step.started_at)}</dd>
        <dt>Ended</dt>
        <dd>{formatTime(step.ended_at)}</dd>
        <dt>Duration</dt>
        <dd>{formatDuration(durationBetween(step.started_at, step.ended_at))}</dd>
      </dl>
      {step.error ? (
        <>
          <h4>Error</h4>
          <ErrorDetails error={step.error} testid="step-error" />
        </>
      ) : (
        <>
          <h4>Output</h4>
          <JsonBlock value={step.output} testid="step-output" />
        </>
      )}
    </div>
  );
}

function TriggerEvent({ eventId }: { eventId: string }) {
  const event = useLoad(() => api.event(eventId), [eventId]);
  return (
    <div class="card">
      <h2>
        Trigger event{" "}
        <Link href={`/events/${encodeURIComponent(eventId)}`}>{event.data?.data.name ?? eventId}</Link>
      </h2>
      <ErrorBanner error={event.error} />
      {event.data && <JsonBlock value={event.data.data.data} testid="trigger-payload" />}
    </div>
  );
}

function RunActions({ run, onChanged }: { run: Run; onChanged: () => void }) {
  const action = useAction();
  const cancel = async () => {
    if (await action.run(() => api.cancelRun(run.run_id))) onChanged();
  };
  const replay = async () => {
    const answer = await action.run(() => api.replayRun(run.run_id));
    if (answer) navigate(`/runs/${encodeURIComponent(answer.data.run_id)}`);
  };
  return (
    <>
      <div class="actions">
        {run.status === "Running" && (
          <button
            type="button"
            class="danger"
            data-testid="cancel-run"
            disabled={action.busy}
            onClick={cancel}
          >
            Cancel run
          </button>
        )}
        <button type="button" data-testid="replay-run" disabled={action.busy} onClick={replay}>
          Replay
        </button>
      </div>
      <ErrorBanner error={action.error} onDismiss={action.clearError} />
    </>
  );
}

export function RunPage({ runId }: { runId: string }) {
  const loaded = useLoad(() => loadRun(runId), [runId]);
  const [selected, setSelected] = useState<number | null>(null);
  const run = loaded.data?.run;
  const steps = loaded.data?.steps ?? [];
  // Live while the run is running: status and timeline follow along every second.
  useInterval(() => void loaded.reload(), 1000, run?.status === "Running");
  const step = selected === null ? null : (steps[selected] ?? null);

  return (
    <section>
      <div class="page-head">
        <h1>
          Run <span class="mono small">{runId}</span>
        </h1>
        {run && <StatusBadge status={run.status} testid="run-status" />}
      </div>
      <ErrorBanner error={loaded.error} />
      {run && (
        <>
          <div class="card">
            <div class="card-head">
              <dl class="facts">
                <dt>Function</dt>
                <dd>
                  <Link href={href("/runs", { function_id: run.function_id })}>{run.function_id}</Link>{" "}
                  <span class="muted small">
                    (<Link href={`/functions/${encodeURIComponent(run.function_id)}/metrics`}>metrics</Link>)
                  </span>
                </dd>
                <dt>Started</dt>
                <dd data-testid="run-started">{formatTime(run.run_started_at)}</dd>
                <dt>Ended</dt>
                <dd data-testid="run-ended">{run.ended_at ? formatTime(run.ended_at) : "still running"}</dd>
                <dt>Duration</dt>
                <dd data-testid="run-duration">
                  {formatDuration(durationBetween(run.run_started_at, run.ended_at))}
                </dd>
              </dl>
              <RunActions run={run} onChanged={() => void loaded.reload()} />
            </div>
            {run.error ? (
              <>
                <h2>Error</h2>
                <ErrorDetails error={run.error} testid="run-error" />
              </>
            ) : run.status === "Running" ? null : (
              <>
                <h2>Output</h2>
                <JsonBlock value={run.output} testid="run-output" />
              </>
            )}
          </div>
          <div class="card">
            <h2>Timeline</h2>
            <Timeline run={run} steps={steps} now={Date.now()} selected={selected} onSelect={setSelected} />
          </div>
          {step ? (
            <StepDetail step={step} />
          ) : (
            steps.length > 0 && <p class="muted">Pick a step in the timeline to see its output or error.</p>
          )}
          <TriggerEvent eventId={run.event_id} />
        </>
      )}
    </section>
  );
}
