"""Operations: health and metrics routes, scheduled jobs and the scheduler, database roles, migrations, the
embedded PostgreSQL, WSGI serving, backups and the API docs page."""
