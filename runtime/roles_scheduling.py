"""Roles ``scheduler`` (the tick producer) and ``metrics`` (group tenant-metrics)."""

from typing import TYPE_CHECKING

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.postgres.tenant_figures import PostgresTenantFigures
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from adapters.redis_usage import RedisTenantUsage
from consumers import metrics as metrics_consumer
from producers.scheduler import Scheduler
from service.event_transaction import EventTransaction
from service.metrics_collection import BackupFreshness, MetricsCollection, Quotas

if TYPE_CHECKING:
    from runtime.roles import Background
    from runtime.worker import Worker


async def scheduler_role(worker: "Worker") -> list["Background"]:
    # Its own session holds the leader lock; standbys in other processes wait on it.
    return [Scheduler(worker.settings, worker.publisher)]


async def metrics_role(worker: "Worker") -> list["Background"]:
    s = worker.settings
    figures = PostgresTenantFigures(worker.pool, s.names.tenant_metrics())
    collection = MetricsCollection(
        EventTransaction(
            PostgresUnitOfWorks(
                worker.pool,
                PostgresStores.of(s.names.control_schema, s.names.tenant_store(), worker.outbox),
            ),
            metrics_consumer.GROUP,
        ),
        figures,
        RedisTenantUsage(
            worker.redis,
            scan_count=s.metrics_redis_scan_count,
            max_keys=s.metrics_redis_max_keys,
            sample_keys=s.metrics_redis_sample_keys,
            prefix=s.names.redis_prefix,
        ),
        Quotas(size_bytes=s.quota_size_bytes, connections=s.quota_connections),
        snapshot_ttl_s=s.metrics_redis_ttl_s,
        history_length=s.metrics_history_length,
        source=s.source,
    )
    worker.deliveries.append(
        metrics_consumer.register(worker.broker, s, collection, KafkaDeadLetters(worker.publisher))
    )
    return [BackupFreshness(figures, s.backup_rpo_s, s.backup_freshness_interval_s)]
