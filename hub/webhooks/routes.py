"""Webhook registration routes: `PUT`, `GET` and `DELETE /v1/webhooks`, the caller's own endpoint only."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from hub.db import utcnow
from hub.errors import NotFoundError
from hub.identity.auth import current_principal, require_scope
from hub.web import db
from hub.web import settings as current_settings
from hub.webhooks.models import WebhookEndpoint
from hub.webhooks.service import register, unregister

blp = Blueprint("webhooks", __name__, description="Checkpoint webhooks (push) to a partner's endpoint")


class WebhookSchema(Schema):
    url = fields.String(
        required=True,
        metadata={"description": "https URL the hub POSTs checkpoint notes to; its host must be public"},
    )


class WebhookOutSchema(Schema):
    url = fields.String()
    created_at = fields.DateTime()


@blp.route("/v1/webhooks", methods=["PUT"])
@require_scope("feed:read")
@blp.arguments(WebhookSchema)
@blp.response(200, WebhookOutSchema)
@blp.alt_response(422, description="URL refused: not https, or a private, loopback or unresolvable host")
def put_webhook(args: dict[str, Any]) -> WebhookEndpoint:
    """Register (or replace) this partner's webhook endpoint."""
    p = current_principal()
    allow = current_settings().webhook_allow
    return register(db(), p.partner_id, args["url"], p.actor(), utcnow(), allow=allow)


@blp.route("/v1/webhooks", methods=["GET"])
@require_scope("feed:read")
@blp.response(200, WebhookOutSchema)
@blp.alt_response(404, description="no webhook registered")
def get_webhook() -> WebhookEndpoint:
    """This partner's webhook endpoint."""
    endpoint = db().get(WebhookEndpoint, current_principal().partner_id)
    if endpoint is None:
        raise NotFoundError("no webhook is registered")
    return endpoint


@blp.route("/v1/webhooks", methods=["DELETE"])
@require_scope("feed:read")
@blp.response(204)
@blp.alt_response(404, description="no webhook registered")
def delete_webhook() -> None:
    """Stop webhooks to this partner."""
    p = current_principal()
    unregister(db(), p.partner_id, p.actor(), utcnow())
