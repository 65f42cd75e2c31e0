"""A job's results continue the trace of the request that queued it, with fakes: the job runner
writes them long after the request's span ended, yet each result (a rider's too) carries its
own request's trace id, with or without a tracer installed."""

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters import trace_context
from contracts.tracecontext import TraceParent, trace_of
from domain.jobs import Job, Rider
from tests.support.tracing import captured_spans
from tests.unit.fakes import FakeJobLeases, FakeStores
from tests.unit.test_job_attempts import _runner

JOB_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RIDER_TRACE = "0af7651916cd43dd8448eb211c80319c"
JOB_PARENT = f"00-{JOB_TRACE}-00f067aa0ba902b7-01"
RIDER_PARENT = f"00-{RIDER_TRACE}-b7ad6b7169203331-01"


async def _results(job: Job) -> dict[str, Any]:
    """The results of a spent backup (answered at once, no backup work is needed) claimed by
    the runner, with two riders; FakeOutbox stamps each with the span current when added."""
    stores = FakeStores()
    runner = _runner(stores)
    async with stores("queue") as uow:
        await uow.jobs.add(job.job_id, "backup", "acme", "cause-1", "corr-1")
    stores.state.riders.update({"rider-1": job.job_id, "rider-2": job.job_id})
    stores.state.rider_rows["rider-1"] = Rider("rider-1", "corr-r1", RIDER_PARENT, None)
    stores.state.rider_rows["rider-2"] = Rider("rider-2", "corr-r2")
    claimed = await FakeJobLeases(stores).claim(runner.owner, ["backup"], 30.0, 3)
    assert claimed is not None
    await runner.run_job(job)
    return {e.causationid: e for e in stores.results}


def _spent_backup(traceparent: str | None) -> Job:
    return Job("job-1", "backup", "acme", "cause-1", "corr-1", None, 4, spent=True,
               traceparent=traceparent, tracestate="team=a" if traceparent else None)


async def test_without_a_tracer_each_result_continues_its_own_requests_trace() -> None:
    results = await _results(_spent_backup(JOB_PARENT))
    own, state = trace_of(results["cause-1"])
    assert own is not None and own.trace_id == JOB_TRACE and state == "team=a"
    rider = trace_of(results["rider-1"])[0]
    assert rider is not None and rider.trace_id == RIDER_TRACE
    # A rider that carried no context gets a trace of its own, not the job's.
    other = trace_of(results["rider-2"])[0]
    assert other is not None and other.trace_id not in (JOB_TRACE, RIDER_TRACE)


async def test_a_job_queued_without_context_still_answers_in_one_valid_trace() -> None:
    results = await _results(_spent_backup(None))
    own = trace_of(results["cause-1"])[0]
    assert own is not None and TraceParent.parse(str(own)) == own


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with captured_spans(monkeypatch) as exporter:
        yield exporter


async def test_with_a_tracer_the_job_span_continues_the_request_and_writes_its_result(
    spans: InMemorySpanExporter,
) -> None:
    results = await _results(_spent_backup(JOB_PARENT))
    finished = spans.get_finished_spans()
    (job,) = [s for s in finished if s.name == "job backup"]
    assert f"{job.context.trace_id:032x}" == JOB_TRACE
    assert job.parent is not None and f"{job.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert job.attributes["job.id"] == "job-1"
    own = trace_of(results["cause-1"])[0]
    assert own == TraceParent(JOB_TRACE, f"{job.context.span_id:016x}", "01")
    answers = {s.attributes["messaging.message.id"]: s for s in finished if s.name == "answer backup"}
    rider = trace_of(results["rider-1"])[0]
    assert rider is not None and rider.trace_id == RIDER_TRACE
    assert rider.span_id == f"{answers['rider-1'].context.span_id:016x}"


def test_a_stored_context_round_trips_through_current_trace() -> None:
    with trace_context.continued_span("job backup", JOB_PARENT, "team=a"):
        parent, state = trace_context.current_trace()
    assert parent is not None and TraceParent.parse(parent).trace_id == JOB_TRACE  # type: ignore[union-attr]
    assert state == "team=a"
    assert trace_context.current_trace() == (None, None)
    with trace_context.continued_span("job backup", "not-a-traceparent"):
        fresh = trace_context.current_trace()[0]
    assert fresh is not None and JOB_TRACE not in fresh


async def test_an_event_of_a_batch_writes_its_result_from_a_transaction_span_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    from contracts.events import TenantRequested
    from service.event_transaction import EventTransaction
    from service.provisioning import ProvisioningService
    from tests.unit.use_case_support import TEMPLATE, decoded

    stores = FakeStores()
    tx = EventTransaction(stores, "tenant-provisioner")
    provisioning = ProvisioningService(
        tx, TEMPLATE, plans=frozenset({"pro"}), max_tenants=10, source="urn:tests"
    )
    event = decoded(TenantRequested(tenant_id="acme", plan="pro"))
    async with tx.batch() as batch:
        await batch.claim([event.envelope])
        with trace_context.span("process tenants.lifecycle"):
            async with batch.event(event.envelope):
                await provisioning.handle(event)
    finished = {s.name: s for s in spans.get_finished_spans()}
    transaction, consume = finished["db.transaction"], finished["process tenants.lifecycle"]
    assert transaction.parent is not None
    assert transaction.parent.span_id == consume.context.span_id
    (result,) = stores.results
    writer = trace_of(result)[0]
    assert writer is not None and writer.span_id == f"{transaction.context.span_id:016x}"
