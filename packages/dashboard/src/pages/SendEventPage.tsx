import { useState } from "preact/hooks";
import { api, type Json } from "../api";
import { ErrorBanner } from "../components/ErrorBanner";
import { JsonEditor, parseJson } from "../components/JsonEditor";
import { timeAgo } from "../format";
import { useAction } from "../hooks";
import { Link } from "../router";

const HISTORY_KEY = "stepline.sentEvents";
const HISTORY_MAX = 10;
const EXAMPLE = `{
  "name": "test/hello",
  "data": {
    "message": "Hello from the dashboard"
  }
}`;

interface Sent {
  text: string;
  names: string[];
  sent_at: string;
}

/** Accepts one event object or a non-empty array of them; each needs a non-empty string `name`. */
export function validateEvents(text: string): { value: Json; names: string[] } | { error: string } {
  if (!text.trim()) return { error: "Write an event as JSON." };
  const parsed = parseJson(text);
  if (!parsed.ok) return { error: `Invalid JSON: ${parsed.error}` };
  const list = Array.isArray(parsed.value) ? parsed.value : [parsed.value];
  if (list.length === 0) return { error: "The array is empty: add at least one event." };
  const names: string[] = [];
  for (const [i, item] of list.entries()) {
    const where = Array.isArray(parsed.value) ? `Event ${i + 1}` : "The event";
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      return { error: `${where} must be a JSON object like {"name": "...", "data": {}}.` };
    }
    const name = (item as Record<string, unknown>).name;
    if (typeof name !== "string" || !name.trim()) return { error: `${where} needs a string "name".` };
    names.push(name);
  }
  return { value: parsed.value as Json, names };
}

function readHistory(): Sent[] {
  try {
    const raw = window.localStorage.getItem(HISTORY_KEY);
    const list: unknown = raw ? JSON.parse(raw) : [];
    return Array.isArray(list) ? (list as Sent[]).filter((s) => typeof s?.text === "string") : [];
  } catch {
    return [];
  }
}

function writeHistory(list: Sent[]): void {
  try {
    window.localStorage.setItem(HISTORY_KEY, JSON.stringify(list));
  } catch {
    // Storage full or disabled: the history is a convenience, sending still worked.
  }
}

function History({ items, onPick }: { items: Sent[]; onPick: (text: string) => void }) {
  if (items.length === 0) return <p class="muted">Events you send are listed here to send again.</p>;
  return (
    <ul class="history" data-testid="send-history">
      {items.map((item) => (
        <li key={`${item.sent_at}:${item.text}`}>
          <button
            type="button"
            class="history-item"
            data-testid="history-item"
            onClick={() => onPick(item.text)}
          >
            <span class="mono">{item.names.join(", ")}</span>
            <span class="muted small">{timeAgo(item.sent_at)}</span>
          </button>
        </li>
      ))}
    </ul>
  );
}

export function SendEventPage() {
  const [text, setText] = useState(() => readHistory()[0]?.text ?? EXAMPLE);
  const [history, setHistory] = useState<Sent[]>(readHistory);
  const [ids, setIds] = useState<string[] | null>(null);
  const action = useAction();
  const check = validateEvents(text);
  const error = "error" in check ? check.error : null;

  const send = async (e: Event) => {
    e.preventDefault();
    if ("error" in check) return;
    setIds(null);
    const answer = await action.run(() => api.sendEvents(check.value));
    if (!answer) return;
    setIds(answer.ids);
    const entry: Sent = { text, names: check.names, sent_at: new Date().toISOString() };
    const next = [entry, ...history.filter((h) => h.text !== text)].slice(0, HISTORY_MAX);
    setHistory(next);
    writeHistory(next);
  };

  return (
    <section>
      <div class="page-head">
        <h1>Send event</h1>
      </div>
      <div class="split">
        <form class="card" onSubmit={send}>
          <JsonEditor
            label='Event JSON: {"name": ..., "data": ...} or an array of them'
            value={text}
            onInput={setText}
            error={error}
            testid="send-editor"
            errorTestid="send-error"
            rows={14}
          />
          <div class="form-actions">
            <button type="submit" class="primary" data-testid="send-submit" disabled={!!error || action.busy}>
              {action.busy ? "Sending…" : "Send event"}
            </button>
          </div>
          <ErrorBanner error={action.error} onDismiss={action.clearError} />
          {ids && (
            <div class="banner banner-ok" role="status">
              Sent {ids.length === 1 ? "1 event" : `${ids.length} events`}:
              <ul class="sent-ids" data-testid="sent-ids">
                {ids.map((id) => (
                  <li key={id}>
                    <Link href={`/events/${encodeURIComponent(id)}`} class="mono">
                      {id}
                    </Link>
                  </li>
                ))}
              </ul>
            </div>
          )}
        </form>
        <aside class="card">
          <h2>Recently sent</h2>
          <History items={history} onPick={setText} />
        </aside>
      </div>
    </section>
  );
}
