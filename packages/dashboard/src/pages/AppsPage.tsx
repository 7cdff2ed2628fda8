import { useState } from "preact/hooks";
import { type App, api } from "../api";
import { ErrorBanner, Notice } from "../components/ErrorBanner";
import { formatTime, timeAgo } from "../format";
import { useAction, useLoad } from "../hooks";
import { Link } from "../router";

function syncMessage(url: string, modified: boolean): string {
  return modified ? `Synced ${url}: its functions were updated.` : `Synced ${url}: nothing changed.`;
}

function SyncForm({ onSynced }: { onSynced: (message: string) => void }) {
  const [url, setUrl] = useState("");
  const action = useAction();
  const submit = async (e: Event) => {
    e.preventDefault();
    const trimmed = url.trim();
    if (!trimmed) return;
    const answer = await action.run(() => api.syncApp(trimmed));
    if (answer) {
      setUrl("");
      onSynced(syncMessage(answer.data.url ?? trimmed, answer.data.modified));
    }
  };
  return (
    <form class="card form-inline" onSubmit={submit}>
      <h2>Sync new app</h2>
      <div class="field grow">
        <label for="sync-url">App URL (its serve endpoint)</label>
        <input
          id="sync-url"
          type="text"
          inputMode="url"
          placeholder="http://127.0.0.1:3000/api/inngest"
          value={url}
          data-testid="sync-url"
          onInput={(e) => setUrl(e.currentTarget.value)}
        />
      </div>
      <button type="submit" class="primary" data-testid="sync-submit" disabled={action.busy || !url.trim()}>
        {action.busy ? "Syncing…" : "Sync app"}
      </button>
      <div class="full">
        <ErrorBanner error={action.error} onDismiss={action.clearError} />
      </div>
    </form>
  );
}

function AppRow({ app, onSynced }: { app: App; onSynced: (message: string) => void }) {
  const action = useAction();
  const resync = async () => {
    const answer = await action.run(() => api.syncApp(app.url));
    if (answer) onSynced(syncMessage(app.url, answer.data.modified));
  };
  return (
    <tr data-testid="app-row" data-app-id={app.id}>
      <td class="mono">{app.id}</td>
      <td class="mono wrap-anywhere">{app.url}</td>
      <td>
        {app.sdk ?? "—"}
        {app.framework ? <span class="muted"> ({app.framework})</span> : null}
      </td>
      <td class="nowrap" title={formatTime(app.synced_at)}>
        {timeAgo(app.synced_at)}
      </td>
      <td class="num">
        <Link href="/functions">{app.functions}</Link>
      </td>
      <td>
        {app.error && <span class="text-error">{app.error}</span>}
        {action.error && (
          <span class="text-error" data-testid="error-banner" role="alert">
            {action.error}
          </span>
        )}
      </td>
      <td>
        <button type="button" data-testid="resync-button" disabled={action.busy} onClick={resync}>
          {action.busy ? "Syncing…" : "Resync"}
        </button>
      </td>
    </tr>
  );
}

export function AppsPage() {
  const apps = useLoad(() => api.apps(), []);
  const [message, setMessage] = useState<string | null>(null);
  const onSynced = (text: string) => {
    setMessage(text);
    void apps.reload();
  };
  const list = apps.data?.data ?? [];
  return (
    <section>
      <div class="page-head">
        <h1>Apps</h1>
      </div>
      <SyncForm onSynced={onSynced} />
      {message && <Notice testid="sync-result">{message}</Notice>}
      <ErrorBanner error={apps.error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>ID</th>
              <th>URL</th>
              <th>SDK</th>
              <th>Last sync</th>
              <th>Functions</th>
              <th>Error</th>
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {!apps.loading && list.length === 0 && !apps.error && (
              <tr>
                <td colSpan={7} class="empty">
                  No apps yet. Sync one with its URL above.
                </td>
              </tr>
            )}
            {list.map((app) => (
              <AppRow key={app.id} app={app} onSynced={onSynced} />
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
