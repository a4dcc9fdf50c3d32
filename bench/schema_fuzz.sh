#!/bin/bash
# The schema fuzzer's numbers for the issue note: seeds a fresh PostgreSQL database with
# tests/config/schema_fuzz.seed() (one owner's tenant, an all-scope token), serves this checkout
# with runserver (DEBUG off) and runs schemathesis's CLI with every check over every operation
# but DELETE (a deleted project would take the token with it), 20 examples each.
#
#   bench/schema_fuzz.sh [DATABASE_NAME] [PORT] [REPORT_FILE]
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and `make install-dev`. The summary at the
# end of REPORT_FILE counts unique failures per check (ST1xx: responses, ST2xx: requests).
set -euo pipefail
DB=${1:-pulse_schema_fuzz}
PORT=${2:-8799}
REPORT=${3:-/tmp/schema_fuzz_report.txt}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
SEEDED=$(mktemp)
cd "$ROOT"
export DJANGO_SETTINGS_MODULE=config.settings PULSE_ENV=development DEBUG=false REDIS_URL= \
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
"$PY" manage.py migrate -v0
SEEDED="$SEEDED" "$PY" - <<'PY'
import json, os
from dataclasses import asdict

import django

django.setup()
from celery.app.task import Task

Task.apply_async = lambda self, *args, **kwargs: None  # no broker here; nothing may be sent
from tests.config.schema_fuzz import seed

json.dump(asdict(seed()), open(os.environ["SEEDED"], "w"))
PY
"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload > "$REPORT.server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
sleep 4
PULSE_FUZZ_SEEDED="$SEEDED" SCHEMATHESIS_HOOKS=tests.config.schema_fuzz "$ROOT/.venv/bin/st" run \
  "http://127.0.0.1:$PORT/api/schema/?format=json" --checks all --max-examples 20 --seed 10 \
  --exclude-method DELETE --no-color --output-truncate false > "$REPORT" 2>&1 || true
sed -n '/= SUMMARY =/,$p' "$REPORT"
