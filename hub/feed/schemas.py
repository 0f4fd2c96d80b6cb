"""The feed API's contract in the OpenAPI document: submission, acknowledgements, collections, retirement."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from hub.feed import collections, signals
from hub.feed.models import FEED_TYPES
from hub.web import MAX_BIGINT, ItemList
from partners.matching.vpdq import MAX_VPDQ_CHARS

MAX_PAGE = 100
DEFAULT_PAGE = 20

_TAG_PATTERN = f"^{signals.TAG.pattern}$"  # the pattern the service checks tags with, not a copy


class SignalItemSchema(Schema):
    """One submitted hash. `hub.feed.signals.validate` enforces these fields and limits (and the collection's
    own: the types it takes, its `min_quality`), naming each bad item by its index."""

    type = fields.String(required=True, validate=validate.OneOf(list(FEED_TYPES)))
    value = fields.String(
        required=True,
        validate=validate.Length(min(signals.HEX_LENGTHS.values()), MAX_VPDQ_CHARS),
        metadata={
            "description": "the hash in hex, any case (stored lowercase): "
            + ", ".join(f"{kind} {n} digits" for kind, n in signals.HEX_LENGTHS.items())
            + "; the all-zero PDQ hash is refused; vpdq: its frames as a JSON array of"
            ' "<64 hex>,<quality>,<seconds>" strings (docs/formats.md)'
        },
    )
    quality = fields.Integer(
        allow_none=True,
        strict=True,
        validate=validate.Range(0, 100),
        metadata={"description": "pdq only; at least the collection's min_quality"},
    )
    tags = fields.List(
        fields.String(validate=[validate.Length(1, signals.MAX_TAG_LENGTH), validate.Regexp(_TAG_PATTERN)]),
        allow_none=True,
        validate=validate.Length(max=signals.MAX_TAGS),
    )
    case_ref = fields.String(
        allow_none=True,
        validate=validate.Length(1, signals.MAX_CASE_REF_LENGTH),
        metadata={"description": "the contributor's own case reference; never served to other partners"},
    )


class SubmitSchema(Schema):
    signals = ItemList(SignalItemSchema, max_items=signals.MAX_SIGNALS_PER_REQUEST)


class SubmittedSchema(Schema):
    collection = fields.String()
    audit_seq = fields.Integer()
    accepted = fields.Integer()
    duplicates = fields.Integer()
    ids = fields.List(fields.String(), metadata={"description": "the signal id of each item, in order"})


class PageArgs(Schema):
    since_size = fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_BIGINT))
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(min=1, max=MAX_PAGE))


class ChunkArgs(Schema):
    seq = fields.Integer(validate=validate.Range(min=1, max=MAX_BIGINT))


class AckSchema(Schema):
    # strict: 1.5 or "1" is no size (marshmallow would take int(1.5)); query integers arrive as text, these never.
    size = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=MAX_BIGINT))
    root = fields.String(required=True, metadata={"description": "base64 root hash at size"})


class AckedSchema(Schema):
    audit_seq = fields.Integer()


class CollectionCreateSchema(Schema):
    slug = fields.String(required=True)
    owner = fields.String(required=True)
    category = fields.String(load_default="ncii")
    signal_types = fields.List(fields.String(), load_default=lambda: list(collections.DEFAULT_SIGNAL_TYPES))
    pdq_threshold = fields.Integer(load_default=31, strict=True, validate=validate.Range(min=0, max=256))
    min_quality = fields.Integer(load_default=50, strict=True, validate=validate.Range(min=0, max=100))
    vpdq_percent = fields.Integer(
        load_default=80,
        strict=True,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "P of the vPDQ rule: the share of frames (%) both videos must match"},
    )


class CollectionSettingsSchema(Schema):
    """A collection's matching settings to change; a field left out keeps its value."""

    signal_types = fields.List(fields.String())
    pdq_threshold = fields.Integer(strict=True, validate=validate.Range(min=0, max=256))
    min_quality = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    vpdq_percent = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "P of the vPDQ rule: the share of frames (%) both videos must match"},
    )


class CollectionSchema(Schema):
    id = fields.String()
    slug = fields.String()
    category = fields.String()
    signal_types = fields.List(fields.String())
    pdq_threshold = fields.Integer()
    min_quality = fields.Integer()
    vpdq_percent = fields.Integer()
    descriptor_version = fields.Integer()
    access = fields.List(fields.String())


class RetireSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(list(FEED_TYPES)))
    value = fields.String(
        required=True, metadata={"description": "the hash, lowercase or uppercase hex (vpdq: its frames)"}
    )


class RetiredSchema(Schema):
    type = fields.String()
    value = fields.String()
    audit_seq = fields.Integer()
    removed = fields.List(fields.String(), metadata={"description": "signal ids the next batches remove"})


class RetractSchema(Schema):
    reason = fields.String(
        load_default="withdrawn", validate=validate.OneOf(["withdrawn", "error", "policy"])
    )
