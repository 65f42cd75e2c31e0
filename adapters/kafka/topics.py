"""Creates the service's topics at start-up with the configured partition count."""

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from domain.errors import TransientError
from runtime.settings import Settings


async def ensure_topics(settings: Settings) -> None:
    """Create this deployment's (namespaced) topics that do not exist yet."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=settings.kafka_partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs={"max.message.bytes": str(settings.kafka_record_bytes)},
            )
            for name in settings.names.topics.all
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
