// Durations as the inngest SDK writes them: "30s", "1h30m", "2d", "1w" (its `timeStr` output, and
// the `ms`-style strings users put in function configs such as `timeouts` and `cancelOn`).

const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)/g;
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** Milliseconds (rounded up) of a duration like "1h30m"; null when `text` is not one. "" is 0. */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (t === "") return 0;
  const parts = [...t.matchAll(PART)];
  if (parts.map((p) => p[0]).join("") !== t) return null;
  return Math.ceil(parts.reduce((sum, p) => sum + Number(p[1]) * (UNIT_MS[p[2] as string] ?? 0), 0));
}
