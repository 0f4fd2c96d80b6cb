"""Match and takedown reports: models, service, schemas and routes (`/v1/reports`)."""
