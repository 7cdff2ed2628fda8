// The dashboard at `/`: the Preact app built by the project's build into packages/dashboard/dist,
// served as static files (no CDN at run time). Client-side routes (`/runs/<id>`, ...) answer with
// index.html, so a page can be reloaded or linked to. Without a build, `/` says how to make one.
import { existsSync } from "node:fs";
import path from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Paths that are the API's, never the dashboard's: an unknown one stays a JSON 404. */
const API_PATH = /^\/(v1|e|fn|api)(\/|$)/;

/** True for a browser asking for a page (not an asset, not an API client). */
function wantsPage(req: FastifyRequest): boolean {
  const url = req.url.split("?")[0] ?? "";
  return (
    req.method === "GET" &&
    !API_PATH.test(url) &&
    !path.extname(url) &&
    (req.headers.accept ?? "").includes("text/html")
  );
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stepline</title>
<link rel="icon" href="data:,"></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto">
<h1>Stepline</h1>
<p>The dashboard has not been built. Run <code>npm run build</code> (or <code>npm start</code>, which builds it)
and reload. The API works without it: see the README's "REST API".</p>
</body></html>
`;

/**
 * Serves the dashboard from `dir` (its index.html and hashed assets). `notFound` is the app's
 * 404 for everything that is not a page.
 */
export function registerDashboard(
  app: FastifyInstance,
  dir: string | null,
  notFound: (req: FastifyRequest, reply: FastifyReply) => unknown,
): void {
  const built = dir !== null && existsSync(path.join(dir, "index.html"));
  if (built) {
    void app.register(fastifyStatic, {
      root: dir,
      prefix: "/",
      index: false,
      wildcard: true,
      // Asset names carry their content hash: cache them for good; index.html is always checked.
      setHeaders: (res, file) => {
        res.header(
          "cache-control",
          file.endsWith(".html") ? "no-cache" : "public, max-age=31536000, immutable",
        );
      },
    });
  }
  const page = (_req: FastifyRequest, reply: FastifyReply) =>
    built
      ? reply.header("cache-control", "no-cache").sendFile("index.html")
      : reply.type("text/html; charset=utf-8").send(NOT_BUILT);
  app.get("/", page);
  app.setNotFoundHandler((req, reply) => (wantsPage(req) ? page(req, reply) : notFound(req, reply)));
}
