# The hub image: gunicorn against PostgreSQL. The partner kit and the verifier install without it
# (`pip install 'hashfed[partner,match]'`, `pip install hashfed`).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY hub ./hub
COPY partners ./partners
COPY audit ./audit
COPY migrations ./migrations
# A hub with a StopNCII-shaped upstream builds with `--build-arg HASHFED_EXTRAS=hub,stopncii` (docs/upstreams.md).
ARG HASHFED_EXTRAS=hub
RUN pip install --no-cache-dir ".[${HASHFED_EXTRAS}]"
# The keys volume, and the root key's own volume (mounted only where `hashfed init` runs), start owned by the
# hub's user.
RUN useradd --create-home hashfed && mkdir -p /var/lib/hashfed /var/lib/hashfed-root \
    && chown hashfed /var/lib/hashfed /var/lib/hashfed-root && chmod 700 /var/lib/hashfed-root
USER hashfed
ENV HASHFED_VAR_DIR=/var/lib/hashfed
EXPOSE 8000
CMD ["hashfed", "serve", "--host", "0.0.0.0", "--port", "8000"]
