"""Use cases: one per input event family. Each runs one Postgres transaction with the inbox row,
the effect and the outbox row, and answers with the result event it staged."""
