# The hub image: gunicorn against PostgreSQL. The partner kit and the verifier install without it
# (`pip install 'hashfed[partner,match]'`, `pip install hashfed`).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY partners ./partners
COPY audit ./audit
COPY migrations ./migrations
RUN pip install --no-cache-dir '.[hub]'
RUN useradd --create-home hashfed && mkdir -p /var/lib/hashfed && chown hashfed /var/lib/hashfed
USER hashfed
ENV HASHFED_VAR_DIR=/var/lib/hashfed
EXPOSE 8000
CMD ["hashfed", "serve", "--host", "0.0.0.0", "--port", "8000"]
