"""tenantctl trace's tree: which records belong to a flow, and how they hang together."""

from contracts import codec, topics
from contracts.events import TenantProvisioned, TenantRequested
from tenantctl import trace_ops

T0 = 1_780_000_000_000  # Kafka timestamps, ms


def _request(tenant: str) -> codec.Envelope:
    return codec.envelope_for(TenantRequested(tenant_id=tenant, plan="free"))


def _result(cause: codec.Envelope) -> codec.Envelope:
    t = cause.subject
    event = TenantProvisioned(tenant_id=t, plan="free", schema_name=f"tenant_{t}",
                              schema_version=1, role_name=f"tenant_{t}")
    return codec.envelope_for(event, cause=cause)


def _seen(env: codec.Envelope, topic: str, offset: int, at: int,
          extra: list[tuple[str, bytes]] | None = None) -> trace_ops.Sighting:
    value, headers = codec.encode_record(env)
    s = trace_ops.sighting(topic, 0, offset, T0 + at, value,
                           [*((k, v.encode()) for k, v in headers.items()), *(extra or [])])
    assert s is not None
    return s


def _dead_letter(env: codec.Envelope, offset: int, at: int) -> trace_ops.Sighting:
    return _seen(env, topics.DLQ, offset, at, [
        ("x-dlq-reason", b"retries_exhausted"), ("x-dlq-consumer-group", b"tenant-provisioner"),
        ("x-dlq-source-topic", topics.LIFECYCLE.encode()),
    ])


def test_a_request_and_its_result_form_one_tree_with_the_groups() -> None:
    request = _request("t_a")
    result = _result(request)
    other = _request("t_b")
    seen = [_seen(result, topics.EVENTS, 3, 20), _seen(request, topics.LIFECYCLE, 1, 0),
            _seen(other, topics.LIFECYCLE, 2, 5)]
    for query in (request.id, result.id):  # the correlation id, or any event of the flow
        (root,) = trace_ops.build_tree(trace_ops.select(seen, query))
        assert root.envelope.id == request.id
        assert root.hops[0].kind == "published" and root.hops[0].group == "tenant-provisioner"
        (child,) = root.children
        assert child.envelope.id == result.id and child.hops[0].group == "tenant-provisioner"
    lines = trace_ops.render(trace_ops.build_tree(trace_ops.select(seen, request.id)))
    assert lines[0].startswith(f"TenantRequested {request.id}")
    assert "handled by tenant-provisioner" in lines[1]
    assert lines[2].startswith(f"└─ TenantProvisioned {result.id}")
    assert "from tenant-provisioner" in lines[3]
    assert not any(other.id in line for line in lines)


def test_a_dead_letter_and_its_replay_are_hops_of_the_request() -> None:
    request = _request("t_c")
    result = _result(request)
    seen = [_seen(request, topics.LIFECYCLE, 1, 0), _dead_letter(request, 0, 10),
            _seen(request, topics.LIFECYCLE, 9, 30), _seen(result, topics.EVENTS, 4, 40),
            _seen(result, topics.EVENTS, 5, 41)]
    (root,) = trace_ops.build_tree(trace_ops.select(seen, request.id))
    assert [h.kind for h in root.hops] == ["published", "dead_lettered", "replayed"]
    dlq = root.hops[1]
    assert (dlq.topic, dlq.group, dlq.reason) == (topics.DLQ, "tenant-provisioner",
                                                  "retries_exhausted")
    (child,) = root.children
    assert [h.kind for h in child.hops] == ["published", "republished"]
    as_json = root.as_dict()
    assert as_json["hops"][1]["group"] == "tenant-provisioner"
    assert as_json["children"][0]["causationid"] == request.id


def test_a_trace_id_selects_its_flow_and_garbage_is_no_sighting() -> None:
    request = _request("t_d").model_copy(
        update={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    )
    seen = [_seen(request, topics.LIFECYCLE, 1, 0)]
    assert trace_ops.select(seen, "4bf92f3577b34da6a3ce929d0e0e4736") == seen
    assert trace_ops.select(seen, "nothing") == []
    assert trace_ops.sighting(topics.DLQ, 0, 0, T0, b"\xff not json", []) is None
