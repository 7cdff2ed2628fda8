// Dev mode accepts any event key and needs no signing key, so a web page the developer visits
// must not be able to use their browser to reach a local Stepline: a cross-origin request (a
// `fetch` or form POST from another site) carries an `Origin` that is not this server's own, and
// a DNS-rebinding page that makes its own name point at 127.0.0.1 sends a `Host` that is not a
// loopback name. curl, the SDKs and apps send no Origin and are unaffected.

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?$/i;

/**
 * Why a dev-mode request must be refused, or null to let it through. `loopbackOnly`: the API is
 * bound to a loopback interface, so any legitimate request names a loopback host.
 */
export function browserProblem(
  origin: string | undefined,
  host: string | undefined,
  loopbackOnly: boolean,
): string | null {
  if (loopbackOnly && host !== undefined && !LOOPBACK_HOST.test(host)) {
    return `dev mode answers only requests to a loopback host (localhost or 127.0.0.1), not "${host.slice(0, 100)}"`;
  }
  if (origin === undefined) return null;
  let originHost: string;
  try {
    originHost = new URL(origin).host;
  } catch {
    originHost = "";
  }
  if (originHost !== "" && originHost.toLowerCase() === (host ?? "").toLowerCase()) return null;
  return `cross-origin browser requests are refused in dev mode (Origin ${origin.slice(0, 100)} is not this server's own); send from a server, curl or an SDK`;
}
