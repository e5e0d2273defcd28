# syntax=docker/dockerfile:1
# Tidings: Node 24 runs the TypeScript sources directly (type stripping), so there is no build step;
# the first stage installs production dependencies only, the second holds nothing else.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs an install script at run time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-slim
# MALLOC_ARENA_MAX=2, as in `npm start`: glibc gives each thread that allocates (libuv's pool writes
# the log lines) its own malloc arena; two keep about 10 MiB of RSS off, at no measured CPU cost
# (docs/performance.md, Memory).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json openapi.yaml ./
COPY src ./src
COPY migrations ./migrations
COPY scripts ./scripts
# The image's own user, not root; DATA_DIR (embedded PGlite, if used) must be writable by it.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself, so close-with-grace drains in-flight
# requests and closes the pool (docker stop waits stop_grace_period, then SIGKILL).
STOPSIGNAL SIGTERM
# --max-semi-space-size=8 (MiB), as in `npm start`: on a host with much memory V8 lets the young
# generation grow to 32 MiB semi-spaces; 8 keeps the process under 200 MiB RSS under load, at no
# measured throughput cost (docs/performance.md, Memory).
CMD ["node", "--max-semi-space-size=8", "src/server.ts"]
