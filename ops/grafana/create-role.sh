#!/usr/bin/env bash
# Makes the role the dashboards read as (ops/grafana/README.md), with the password in
# $BERTH_DASHBOARDS_PG_PASSWORD; does nothing when it is empty. The postgres container of
# docker-compose.yml runs it at its first start (/docker-entrypoint-initdb.d); elsewhere, run it with
# psql's usual environment (PGHOST, PGUSER, PGDATABASE ...) as a role that may create roles.
set -euo pipefail
if [[ -z "${BERTH_DASHBOARDS_PG_PASSWORD:-}" ]]; then
    echo "create-role.sh: BERTH_DASHBOARDS_PG_PASSWORD is empty: no dashboards role made" >&2
    exit 0
fi
# in the postgres image's first start, psql reaches the server as $POSTGRES_USER, in $POSTGRES_DB
export PGUSER="${PGUSER:-${POSTGRES_USER:-postgres}}" PGDATABASE="${PGDATABASE:-${POSTGRES_DB:-postgres}}"
# Grafana runs whatever SQL a dashboard's editor writes: as this role it reads only what Berth grants it
# (projections/schema.sql), in read-only transactions of at most 10 s, on at most 8 connections, so that a runaway
# panel cannot hold the PostgreSQL that Berth's event store lives in.
"${PSQL:-psql}" -v ON_ERROR_STOP=1 -v password="$BERTH_DASHBOARDS_PG_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE berth_dashboards LOGIN PASSWORD %L', :'password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'berth_dashboards') \gexec
ALTER ROLE berth_dashboards CONNECTION LIMIT 8;
ALTER ROLE berth_dashboards SET statement_timeout = '10s';
ALTER ROLE berth_dashboards SET default_transaction_read_only = on;
SQL
echo "create-role.sh: role berth_dashboards ready; Berth's projector grants it its reads at its next start" >&2
