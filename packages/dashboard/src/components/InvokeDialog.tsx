import { useState } from "preact/hooks";
import { api, type Fn, type JsonObject } from "../api";
import { useAction } from "../hooks";
import { Link } from "../router";
import { ErrorBanner } from "./ErrorBanner";
import { JsonEditor, parseJson } from "./JsonEditor";
import { Modal } from "./Modal";

/** The payload must be a JSON object: it becomes the invocation event's `data`. */
function validate(text: string): { data: JsonObject | null; error: string | null } {
  const parsed = parseJson(text);
  if (!parsed.ok) return { data: null, error: `Invalid JSON: ${parsed.error}` };
  const v = parsed.value;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return { data: null, error: "The data must be a JSON object, e.g. {}" };
  }
  return { data: v as JsonObject, error: null };
}

interface Props {
  fn: Fn;
  onClose: () => void;
}

export function InvokeDialog({ fn, onClose }: Props) {
  const [text, setText] = useState("{\n  \n}");
  const [result, setResult] = useState<{ event_id: string; run_id: string | null } | null>(null);
  const action = useAction();
  const { data, error } = validate(text);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!data) return;
    const answer = await action.run(() => api.invokeFunction(fn.id, data));
    if (answer) setResult(answer.data);
  };

  return (
    <Modal title={`Invoke ${fn.name}`} onClose={onClose} testid="invoke-dialog">
      <form onSubmit={submit}>
        <JsonEditor
          label="Event data (JSON object)"
          value={text}
          onInput={setText}
          error={error}
          testid="invoke-data"
          errorTestid="invoke-error"
          rows={10}
        />
        <ErrorBanner error={action.error} onDismiss={action.clearError} />
        {result && (
          <div class="banner banner-ok" role="status" data-testid="invoke-result">
            Invoked. Event{" "}
            <Link href={`/events/${encodeURIComponent(result.event_id)}`}>{result.event_id}</Link>
            {result.run_id ? (
              <>
                , run <Link href={`/runs/${encodeURIComponent(result.run_id)}`}>{result.run_id}</Link>
              </>
            ) : (
              " (no run started yet)"
            )}
          </div>
        )}
        <div class="modal-actions">
          <button type="button" onClick={onClose}>
            Close
          </button>
          <button type="submit" class="primary" data-testid="invoke-submit" disabled={!data || action.busy}>
            {action.busy ? "Invoking…" : "Invoke"}
          </button>
        </div>
      </form>
    </Modal>
  );
}
