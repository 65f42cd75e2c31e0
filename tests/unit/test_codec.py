"""contracts.codec: round trip, every dead-letter reason, deterministic result ids."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import codec, topics
from contracts.envelope import CONTENT_TYPE, Envelope, result_event_id
from contracts.events import (
    TenantProvisioned,
    TenantProvisioningFailed,
    TenantRequested,
    TenantSuspended,
)

MAX = 1_048_576
DAY = 86_400.0


def _limits(max_bytes: int = MAX) -> codec.DecodeLimits:
    return codec.DecodeLimits(max_bytes=max_bytes, max_future_s=300.0, max_age_s=30 * DAY)


def _request(tenant_id: str = "acme", **envelope_kw: Any) -> Envelope:
    return codec.envelope_for(TenantRequested(tenant_id=tenant_id, plan="free"), **envelope_kw)


def _raw(**overrides: Any) -> bytes:
    body = json.loads(codec.encode(_request()))
    body.update(overrides)
    return json.dumps(body).encode()


def _reason(value: bytes, *, key: bytes | None = b"acme", topic: str = topics.LIFECYCLE,
            max_bytes: int = MAX) -> str:
    with pytest.raises(codec.InvalidMessage) as caught:
        codec.decode(value, key=key, topic=topic, limits=_limits(max_bytes))
    return caught.value.reason


def test_round_trip_keeps_envelope_and_event() -> None:
    envelope = _request(correlation_id="corr-1")
    decoded = codec.decode(codec.encode(envelope), key=b"acme", topic=topics.LIFECYCLE, limits=_limits())
    assert decoded.envelope == envelope
    assert decoded.event == TenantRequested(tenant_id="acme", plan="free")
    assert decoded.envelope.correlationid == "corr-1"


def test_uncaused_envelope_correlates_with_itself_and_omits_causation() -> None:
    envelope = _request()
    assert envelope.correlationid == envelope.id
    assert envelope.causationid is None
    assert "causationid" not in json.loads(codec.encode(envelope))


def test_too_large() -> None:
    value = codec.encode(_request())
    assert _reason(value, max_bytes=len(value) - 1) == codec.TOO_LARGE
    codec.decode(value, key=b"acme", topic=topics.LIFECYCLE, limits=_limits(len(value)))  # at the limit


@pytest.mark.parametrize("value", [b"\xff\xfe not json", b"{not json", b"", b'{"a": 1'])
def test_invalid_json(value: bytes) -> None:
    assert _reason(value) == codec.INVALID_JSON


@pytest.mark.parametrize(
    "value",
    [b'{"hello": "world"}', b"[1, 2]", b'"text"', _raw(specversion="0.3"), _raw(**{"Extra": "x"}),
     _raw(**{"bad-name": "x"}), _raw(ext={"nested": 1}), _raw(ext=[1]), _raw(ext=1.5),
     _raw(datacontenttype="text/plain"),
     _raw(id=""), _raw(data="not an object")],
)
def test_not_cloudevent(value: bytes) -> None:
    assert _reason(value) == codec.NOT_CLOUDEVENT


def test_naive_time_is_not_a_cloudevent() -> None:
    assert _reason(_raw(time="2026-01-01T00:00:00")) == codec.NOT_CLOUDEVENT


@pytest.mark.parametrize(
    "time",
    ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-01-01T00:05:01Z",
     "2025-12-01T23:59:59Z"],
    ids=["epoch", "year-9999", "just-over-skew", "just-over-age"],
)
def test_time_far_from_the_consumers_clock(time: str) -> None:
    with pytest.raises(codec.InvalidMessage) as caught:
        codec.decode(_raw(time=time), key=b"acme", topic=topics.LIFECYCLE, limits=_limits(),
                     at=datetime(2026, 1, 1, tzinfo=UTC))
    assert caught.value.reason == codec.TIME_OUT_OF_RANGE
    assert time[:10] in caught.value.detail


@pytest.mark.parametrize("time", ["2026-01-01T00:05:00Z", "2025-12-02T00:00:00Z",
                                  "2026-01-01T02:00:00+02:00"])
def test_time_within_the_window_is_accepted(time: str) -> None:
    decoded = codec.decode(_raw(time=time), key=b"acme", topic=topics.LIFECYCLE,
                           limits=_limits(), at=datetime(2026, 1, 1, tzinfo=UTC))
    assert decoded.envelope.time == datetime.fromisoformat(time)


def test_unknown_type() -> None:
    assert _reason(_raw(type="TenantTeleported")) == codec.UNKNOWN_TYPE


def test_wrong_topic() -> None:
    assert _reason(codec.encode(_request()), topic=topics.BACKUPS) == codec.WRONG_TOPIC


@pytest.mark.parametrize(
    "data",
    [{"tenant_id": "acme"}, {"tenant_id": "acme", "plan": "free", "extra": 1},
     {"tenant_id": "acme", "plan": ""}, {"tenant_id": "", "plan": "free"}],
)
def test_invalid_data(data: dict[str, Any]) -> None:
    assert _reason(_raw(data=data)) == codec.INVALID_DATA


@pytest.mark.parametrize("key", [b"other", None, b"ACME"])
def test_key_differs_from_subject(key: bytes | None) -> None:
    assert _reason(codec.encode(_request()), key=key) == codec.KEY_MISMATCH


def test_subject_differs_from_data_tenant_id() -> None:
    value = _raw(subject="other")
    with pytest.raises(codec.InvalidMessage) as caught:
        codec.decode(value, key=b"other", topic=topics.LIFECYCLE, limits=_limits())
    assert caught.value.reason == codec.KEY_MISMATCH
    assert "subject" in caught.value.detail


def test_invalid_message_detail_is_bounded() -> None:
    assert len(codec.InvalidMessage("x", "y" * 5000).detail) == 1000


def _provisioned() -> TenantProvisioned:
    return TenantProvisioned(tenant_id="acme", plan="free", schema_name="tenant_acme",
                             role_name="tenant_acme", schema_version=1)


def test_result_id_is_deterministic_and_linked_to_its_cause() -> None:
    cause = _request(correlation_id="corr-1")
    first = codec.envelope_for(_provisioned(), cause=cause)
    second = codec.envelope_for(_provisioned(), cause=cause)
    assert first.id == second.id == result_event_id(cause.id, "TenantProvisioned")
    assert first.causationid == cause.id
    assert first.correlationid == "corr-1"
    assert first.subject == "acme" and first.type == "TenantProvisioned"


def test_result_ids_differ_by_type_and_by_cause() -> None:
    cause = _request()
    failed = TenantProvisioningFailed(tenant_id="acme", reason="conflict")
    ids = {
        codec.envelope_for(_provisioned(), cause=cause).id,
        codec.envelope_for(failed, cause=cause).id,
        codec.envelope_for(_provisioned(), cause=_request()).id,
    }
    assert len(ids) == 3


def test_headers_mirror_the_envelope() -> None:
    envelope = _request(correlation_id="corr-1")
    assert codec.headers_for(envelope) == {
        "content-type": CONTENT_TYPE,
        "ce_type": "TenantRequested",
        "ce_id": envelope.id,
        "ce_correlationid": "corr-1",
    }


def test_a_result_built_without_validation_is_what_validation_would_build() -> None:
    cause = codec.envelope_for(TenantRequested(tenant_id="acme", plan="pro"), correlation_id="c-1")
    result = codec.envelope_for(TenantSuspended(tenant_id="acme"), cause=cause)
    assert Envelope.model_validate(result.model_dump()) == result
    assert (result.causationid, result.correlationid) == (cause.id, "c-1")
    assert result.datacontenttype == "application/json" and result.time is not None
    assert codec.read_envelope(codec.encode(result)) == result


def test_a_result_built_with_its_trace_equals_the_result_stamped_after() -> None:
    from contracts.tracecontext import TraceParent, trace_attributes, trace_of, with_trace

    cause = codec.envelope_for(TenantRequested(tenant_id="acme", plan="pro"))
    parent = TraceParent("ab" * 16, "cd" * 8)
    built = codec.envelope_for(TenantSuspended(tenant_id="acme"), cause=cause,
                               extensions=trace_attributes(parent, "k=v"))
    copied = with_trace(codec.envelope_for(TenantSuspended(tenant_id="acme"), cause=cause),
                        parent, "k=v")
    assert trace_of(built) == (parent, "k=v")
    wire, expected = json.loads(codec.encode(built)), json.loads(codec.encode(copied))
    assert wire.pop("time") and expected.pop("time")
    assert wire == expected and wire["traceparent"] == str(parent)
    untraced = codec.envelope_for(TenantSuspended(tenant_id="acme"), cause=cause,
                                  extensions=trace_attributes(parent))
    assert "tracestate" not in json.loads(codec.encode(untraced))  # None: left out on the wire
    assert codec.read_envelope(codec.encode(built)) == built


def test_a_request_with_a_typed_correlation_id_is_still_validated() -> None:
    with pytest.raises(ValidationError):
        codec.envelope_for(TenantSuspended(tenant_id="acme"), correlation_id="x" * 129)


def test_result_ids_are_the_version_5_uuids_of_type_and_cause() -> None:
    """Written out for speed: each id must be exactly what ``uuid.uuid5`` gives, since ids
    already in outboxes and downstream were made by it."""
    import random
    import uuid

    from contracts.envelope import _RESULT_NAMESPACE

    rng = random.Random(7)
    causes = ["", "é-ünïcode-✓", "7b3c2a5e-4f0d-4c55-9a1e-0c1f5d6b8e21"]
    causes += ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 80)))
               for _ in range(500)]
    for cause in causes:
        for kind in ("TenantProvisioned", "BackupFailed"):
            expected = str(uuid.uuid5(_RESULT_NAMESPACE, f"{kind}:{cause}"))
            assert result_event_id(cause, kind) == expected


@pytest.mark.parametrize("absent", [{"correlationid": None}, {}], ids=["null", "absent"])
def test_a_request_without_correlation_id_correlates_with_itself(absent: dict[str, Any]) -> None:
    body = json.loads(codec.encode(_request()))
    del body["correlationid"]
    body.update(absent)
    decoded = codec.decode(json.dumps(body).encode(), key=b"acme", topic=topics.LIFECYCLE,
                           limits=_limits())
    assert decoded.envelope.correlationid == body["id"]


def test_a_null_content_type_means_json_and_extensions_of_the_allowed_kinds_are_kept() -> None:
    value = _raw(datacontenttype=None, tracestate="a=1", retries=3, replayed=True, note=None)
    envelope = codec.decode(value, key=b"acme", topic=topics.LIFECYCLE, limits=_limits()).envelope
    assert envelope.datacontenttype == "application/json"
    assert envelope.extensions == {"tracestate": "a=1", "retries": 3, "replayed": True, "note": None}


def test_the_schema_requires_the_correlation_id_our_events_always_carry() -> None:
    schema = Envelope.model_json_schema()
    assert "correlationid" in schema["required"]
    assert "default" not in schema["properties"]["correlationid"]


@pytest.mark.parametrize(
    "attributes",
    [
        {"specversion": "1.0", "id": "r-1", "source": "urn:x", "type": "TenantSuspended",
         "time": datetime(2026, 1, 1, tzinfo=UTC), "subject": "acme", "correlationid": "c-1",
         "causationid": "e-1", "data": {"tenant_id": "acme"}},
        {"specversion": "1.0", "id": "r-2", "source": "urn:x", "type": "TenantSuspended",
         "subject": "acme", "correlationid": "c-2", "data": {}, "datacontenttype": "text/json",
         "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "tracestate": None},
    ],
    ids=["a result", "defaults left out, extensions"],
)
def test_constructed_builds_what_model_construct_builds(attributes: dict[str, Any]) -> None:
    from contracts.envelope import constructed

    ours, pydantics = constructed(attributes), Envelope.model_construct(**dict(attributes))
    assert list(ours.__dict__.items()) == list(pydantics.__dict__.items())
    assert ours.model_fields_set == pydantics.model_fields_set
    assert ours.model_extra == pydantics.model_extra
    assert ours.__pydantic_private__ == pydantics.__pydantic_private__
    assert ours == pydantics and codec.encode(ours) == codec.encode(pydantics)
    with pytest.raises(TypeError, match="subject"):
        constructed({k: v for k, v in attributes.items() if k != "subject"})
