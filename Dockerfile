# Tenant Service worker image (used by docker-compose.kafka.yml; entrypoint is the tenantctl CLI).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client zstd age \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Named sources only: whatever else lies in the build context (a key, an .env) stays out of the
# image even if .dockerignore misses it. Keys are given to containers at run time (compose).
COPY pyproject.toml constraints.txt README.md ./
COPY adapters ./adapters
COPY consumers ./consumers
COPY contracts ./contracts
COPY domain ./domain
COPY migrations ./migrations
COPY producers ./producers
COPY runtime ./runtime
COPY service ./service
COPY tenantctl ./tenantctl
RUN pip install --no-cache-dir -c constraints.txt .
ENTRYPOINT ["tenantctl"]
