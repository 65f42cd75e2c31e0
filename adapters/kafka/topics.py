"""Creates the service's topics at start-up with the configured partition count."""

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from adapters.kafka.config import KafkaConfig
from domain.errors import TransientError


async def ensure_topics(config: KafkaConfig) -> None:
    """Create this deployment's (namespaced) topics that do not exist yet."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap,
        request_timeout_ms=config.request_timeout_ms,
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=config.partitions,
                replication_factor=config.replication_factor,
                # The same limit everywhere: a record a source topic accepts must fit the DLQ.
                topic_configs={"max.message.bytes": str(config.record_bytes)},
            )
            for name in config.topics.all
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another replica created it between our list and create
    except KafkaError as e:
        raise TransientError(f"kafka topic creation: {e}") from e
    finally:
        await admin.close()
