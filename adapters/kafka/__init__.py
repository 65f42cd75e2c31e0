"""Kafka adapters over aiokafka: the one producer, topic creation, dead letters."""
