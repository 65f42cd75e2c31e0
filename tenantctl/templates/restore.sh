#!/usr/bin/env bash
# Restores tenant @TENANT_ID@ from backup @BACKUP_ID@ (schema @SCHEMA@, template version
# @SCHEMA_VERSION@) with stock tools only: psql and pg_restore. Written by `tenantctl backup fetch`
# next to the decrypted dump; needs neither the service nor its Python environment.
#
#   ./restore.sh DATABASE        # a libpq connection string or URL; or set RESTORE_DSN
#
# The database must exist (createdb) and must not hold schema @SCHEMA@ yet. The dump
# references what a tenant schema never contains, so this script creates it first:
#   * schema @EXTENSIONS_SCHEMA@ and the extensions in it (@EXTENSIONS@): the tables use their
#     types qualified by that schema (e.g. @EXTENSIONS_SCHEMA@.citext), and pg_dump --schema does not dump
#     extensions; without them pg_restore stops at the first table that uses one;
#   * the NOLOGIN role @ROLE@ if the cluster has none (a fresh cluster): the dump grants it
#     the tenant's privileges.
# Objects are restored with --no-owner: they belong to whoever runs this script, so it works as
# any user allowed to create extensions, roles (or with the role already present) and tables.
# The dump's default privileges name the service's database user (ALTER DEFAULT PRIVILEGES FOR
# ROLE <owner>), which only a member of that role may run; for anyone else they are left out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
db=${1:-${RESTORE_DSN:-}}
if [[ -z $db ]]; then
    echo "usage: $0 DATABASE (a connection string or URL; or set RESTORE_DSN)" >&2
    exit 2
fi

psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS @EXTENSIONS_SCHEMA_Q@;
GRANT USAGE ON SCHEMA @EXTENSIONS_SCHEMA_Q@ TO PUBLIC;
@CREATE_EXTENSIONS@
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = @ROLE_L@) THEN
        CREATE ROLE @ROLE_Q@ NOLOGIN;
    END IF;
END
$$;
SQL

dump="$here/@DUMP_FILE@"
list=$(mktemp)
trap 'rm -f "$list"' EXIT
pg_restore -l "$dump" >"$list"
# The schema's TOC line: "<id>; <oid> <oid> SCHEMA - <name> <owner>".
owner=$(awk '$4 == "SCHEMA" && $5 == "-" { print $7; exit }' "$list")
member=$(psql -X -A -t -q -d "$db" -v owner="$owner" <<<"SELECT pg_has_role(current_user, oid,
    'MEMBER') FROM pg_roles WHERE rolname = :'owner'")
if [[ $member != t ]]; then
    sed -i '/ DEFAULT ACL /d' "$list"
    echo "note: default privileges of role $owner left out (not a member of it)" >&2
fi

# One transaction: a failure leaves nothing half-restored.
pg_restore --exit-on-error --single-transaction --no-owner -L "$list" -d "$db" "$dump"
echo "restored @TENANT_ID@ from @BACKUP_ID@ into schema @SCHEMA@"
