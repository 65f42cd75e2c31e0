# Tenant Service worker image (used by docker-compose.kafka.yml; entrypoint is the tenantctl CLI).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client zstd age \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -c constraints.txt .
ENTRYPOINT ["tenantctl"]
