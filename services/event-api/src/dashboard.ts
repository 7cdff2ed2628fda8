// The placeholder served at GET / until the dashboard lands: what this server is and its endpoints.

/** The placeholder page. `dev` says whether the server runs in dev mode. */
export function dashboardHtml(dev: boolean): string {
  const mode = dev
    ? "dev mode: any event key is accepted into the default environment"
    : "production mode: event keys and signing keys are required";
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Stepline</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
code{background:#f2f2f2;padding:0 .25rem;border-radius:3px}</style></head>
<body>
<h1>Stepline</h1>
<p>Durable functions for apps built with the <code>inngest</code> SDK. Running in ${mode}.</p>
<p>The dashboard comes later. Until then, this server answers:</p>
<ul>
<li><code>POST /e/&lt;event key&gt;</code>: send one event or an array of events</li>
<li><code>POST /fn/register</code>: sync an app's functions (the SDK calls it after a <code>PUT</code> to the app)</li>
<li><code>GET /v1/events/&lt;event id&gt;/runs</code>: the runs an event started</li>
<li><code>GET /v1/events/&lt;event id&gt;/skips</code>: the functions an event started no run of, and why</li>
<li><code>GET /v1/runs/&lt;run id&gt;</code>: one run</li>
</ul>
<p>Accounts, environments and keys are managed with <code>npm run stepline -- accounts|envs|keys ...</code>.</p>
</body>
</html>
`;
}
