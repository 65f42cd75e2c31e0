-- Erase is terminal from the moment it is accepted: 'erasing' until the erase job has finished,
-- then 'erased'. The first erase's archive id is recorded on the registry row, so every later
-- erase request, and every retry of an erase job, keeps that archive and answers with its id.

ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('active', 'suspended', 'erasing', 'erased'));
ALTER TABLE tenants ADD COLUMN erase_archive_id text;

-- Erases accepted before this migration hold from now on; the oldest one is "the first".
UPDATE tenants t SET status = 'erasing', updated_at = now(),
       erase_archive_id = CASE WHEN j.archive THEN 'a-' || substr(j.job_id, 3) END
FROM (SELECT DISTINCT ON (tenant_id) tenant_id, job_id, archive FROM backup_jobs
      WHERE kind = 'erase' AND status IN ('pending', 'running')
      ORDER BY tenant_id, created_at) j
WHERE j.tenant_id = t.tenant_id AND t.status IN ('active', 'suspended');
-- Tenants erased before: an erase keeps nothing but its archive, so a remaining 'a-' backup is it.
UPDATE tenants t SET erase_archive_id = b.backup_id
FROM backups b
WHERE b.tenant_id = t.tenant_id AND t.status = 'erased' AND b.backup_id LIKE 'a-%';

-- Tenants own nothing outside their schema: large objects live outside every schema (no quota,
-- no backup, no erase, and DROP ROLE fails on them), and PostgreSQL lets PUBLIC create them.
-- Only the functions' owner (a superuser) can revoke that; scripts/stack does it as superuser,
-- and provisioning refuses to create a tenant while the grant is still there.
DO $$
BEGIN
    IF pg_has_role(current_user, (SELECT proowner FROM pg_proc
                                  WHERE oid = 'pg_catalog.lo_from_bytea(oid, bytea)'::regprocedure),
                   'USAGE') THEN
        REVOKE EXECUTE ON FUNCTION pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid),
            pg_catalog.lo_from_bytea(oid, bytea) FROM PUBLIC;
    ELSE
        RAISE WARNING 'PUBLIC may still create large objects: as a superuser, run REVOKE EXECUTE'
            ' ON FUNCTION lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea) FROM PUBLIC'
            ' in this database';
    END IF;
END $$;
