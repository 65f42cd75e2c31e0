-- A tenant's event that keeps failing transiently (e.g. waiting on the tenant's lock while a
-- restore holds it) waits here instead of on its Kafka partition: the partition's other tenants
-- go on, and every later event of the same tenant queues behind it (seq order), so per-tenant
-- order holds. The record is kept byte for byte: it is handled, or dead-lettered, from here.
CREATE TABLE parked_events (
    seq              bigserial PRIMARY KEY,
    consumer_group   text NOT NULL,
    tenant_id        text NOT NULL,
    event_id         text NOT NULL,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    record_key       bytea,
    record_value     bytea NOT NULL,
    header_names     text[] NOT NULL,
    header_values    bytea[] NOT NULL,
    status           text NOT NULL DEFAULT 'parked'
                     CHECK (status IN ('parked', 'done', 'dead_lettered')),
    attempts         integer NOT NULL,
    handler_errors   integer NOT NULL DEFAULT 0,
    first_failed_at  timestamptz NOT NULL,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text NOT NULL DEFAULT '',
    parked_at        timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    -- A redelivery of a record already parked (a crash between park and offset commit) is
    -- the same row. The event id is part of the key so a recreated topic's offsets never alias.
    UNIQUE (consumer_group, topic, kafka_partition, kafka_offset, event_id)
);
CREATE INDEX parked_events_waiting ON parked_events (consumer_group, tenant_id, seq)
    WHERE status = 'parked';
CREATE INDEX parked_events_due ON parked_events (consumer_group, next_attempt_at)
    WHERE status = 'parked';
