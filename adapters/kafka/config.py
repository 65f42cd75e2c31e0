"""KafkaConfig: the plain values every Kafka adapter is built from (the settings make one)."""

from dataclasses import dataclass

from contracts.topics import Topics


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str
    request_timeout_ms: int
    record_bytes: int  # the largest record Kafka must take (Settings.kafka_record_bytes)
    topics: Topics  # this deployment's (namespaced) topic names
    partitions: int = 6  # for topics created at start-up
    replication_factor: int = 1
