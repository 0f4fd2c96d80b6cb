"""Checkpoint webhooks: partners' endpoints, signed deliveries with retries, and their registration routes."""
