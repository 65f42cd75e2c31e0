-- The warm pool: tenant schemas and roles made ahead of requests under neutral names
-- (domain.warm_pool), each at the template version it was made from. A provisioner claims one
-- with SELECT ... FOR UPDATE SKIP LOCKED and deletes its row in the provisioning transaction.
CREATE TABLE warm_pool (
    name           text PRIMARY KEY,
    schema_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warm_pool_by_version ON warm_pool (schema_version, created_at);
