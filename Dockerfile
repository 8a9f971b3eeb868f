# orchestrator-state: a multi-stage image. The build stage installs every
# dependency and builds dist/; the runtime stage installs the production
# dependencies alone and takes dist/ from the build stage, running as the
# unprivileged "node" user. No image is built in CI (no registry there): CI
# runs the same commands without a container (README "Container"), and
# test/lifecycle/container.test.ts checks that they are the ones below.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json knexfile.ts ./
COPY scripts ./scripts
COPY gen ./gen
COPY src ./src
COPY web ./web
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=50051 \
    METRICS_PORT=9464 \
    DATA_DIR=/data
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY scripts ./scripts
COPY --from=build /app/dist ./dist
# The embedded database's directory (unused with DATABASE_URL), owned by the user the server runs as.
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 50051 9464
# Ready, as grpc.health.v1 says it (README "Health endpoints"): NOT_SERVING while the database is away.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.METRICS_PORT}/readyz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM (docker stop) drains and exits 0 (README "Stop it"); node runs as PID 1 and handles it itself.
STOPSIGNAL SIGTERM
# What npm start runs (test/lifecycle/container.test.ts); README "Run it" says why each flag.
CMD ["node", "--enable-source-maps", "--heap-growing-percent=60", "dist/src/main.js"]
