"""Roles ``scheduler`` (the tick producer) and ``metrics`` (group tenant-metrics)."""

from adapters.kafka.dead_letters import KafkaDeadLetters
from adapters.postgres.tenant_figures import PostgresTenantFigures
from adapters.postgres.unit_of_work import PostgresStores, PostgresUnitOfWorks
from adapters.redis_usage import RedisTenantUsage
from consumers import metrics as metrics_consumer
from producers.scheduler import Scheduler
from runtime.bootstrap import Resources, RoleParts
from service.event_transaction import EventTransaction
from service.metrics_collection import BackupFreshness, MetricsCollection, Quotas


async def scheduler_role(res: Resources) -> RoleParts:
    # Its own session holds the leader lock; standbys in other processes wait on it.
    return RoleParts(background=(Scheduler(res.settings, res.publisher),))


async def metrics_role(res: Resources) -> RoleParts:
    s = res.settings
    figures = PostgresTenantFigures(res.pool, s.names.tenant_metrics())
    collection = MetricsCollection(
        EventTransaction(
            PostgresUnitOfWorks(
                res.pool,
                PostgresStores.of(s.names.control_schema, s.names.tenant_store(), res.outbox),
            ),
            metrics_consumer.GROUP,
        ),
        figures,
        RedisTenantUsage(
            res.redis,
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
    delivery = metrics_consumer.register(
        res.broker, s, collection, KafkaDeadLetters(res.publisher)
    )
    freshness = BackupFreshness(figures, s.backup_rpo_s, s.backup_freshness_interval_s)
    return RoleParts(deliveries=(delivery,), background=(freshness,))
