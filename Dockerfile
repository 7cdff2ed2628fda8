# One image for all five services; docker-compose.yml picks the service with `command`.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/internal/package.json packages/internal/
COPY packages/proto/package.json packages/proto/
COPY packages/dashboard/package.json packages/dashboard/
COPY services/event-api/package.json services/event-api/
COPY services/runner/package.json services/runner/
COPY services/queue/package.json services/queue/
COPY services/executor/package.json services/executor/
COPY services/history/package.json services/history/
COPY tests/package.json tests/
COPY examples/sdk-app/package.json examples/sdk-app/
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY packages packages
COPY services services
# The dashboard is built here (Vite, into packages/dashboard/dist, served by event-api): no CDN at run time.
RUN npx tsc -b && npm run build -w @stepline/dashboard && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app /app
USER node
# Each service also serves /healthz, /readyz and /metrics on STEPLINE_ADMIN_PORT.
CMD ["node", "services/event-api/dist/main.js"]
