"""The published OpenAPI spec, fuzzed with schemathesis against the app in process (ASGI): whatever the
generated request, the gateway must answer with no server error (5xx). Examples are bounded so the suite
stays fast; requests carry a tenant's key (unauthenticated ones only ever see 401)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from gw_helpers import ADMIN, ALICE, FakeAuth, seed_tenant_keys
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from ry_helpers import make_config
from schemathesis.checks import not_a_server_error

from producer.embedded import embedded_redis
from producer.gateway import create_app
from shared.crypto import load_box
from shared.settings import Settings
from shared.store import Store

MAX_EXAMPLES = 8
FUZZ = hypothesis_settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
schemathesis.serializer.alias("application/jsonl", "application/octet-stream")  # JSONL uploads: raw bytes


def _app() -> Any:
    """Built at import (schemathesis' lazy fixture loader does not run on this pytest): a throw-away SQLite
    store and fakeredis, removed when the module's tests are done."""
    settings = Settings(ROUTEYARD_HOME=_TMP / "home", ROUTEYARD_REDIS_PREFIX="rytest:schema:")
    seed_tenant_keys(_STORE)
    return create_app(
        settings,
        make_config(),
        store=_STORE,
        redis=embedded_redis(),
        authenticator=FakeAuth(),
        box=load_box(settings.home),
        max_upload_bytes=1024 * 1024,
    )


_TMP = Path(tempfile.mkdtemp(prefix="routeyard-schema-"))
_STORE = Store.open(f"sqlite:///{_TMP / 'routeyard.db'}")
schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _STORE.close_sync()
    shutil.rmtree(_TMP, ignore_errors=True)


def test_the_spec_is_published() -> None:
    raw = schema.raw_schema
    assert raw["openapi"].startswith("3.")
    paths = set(raw["paths"])
    assert {"/v1/files", "/v1/batches", "/v1/batches/{batch_id}", "/v1/routeyard/jobs"} <= paths
    assert raw["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@schema.parametrize()
@FUZZ
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {ALICE}"}, checks=[not_a_server_error])


admin_only = schema.include(path_regex=r"^/(v1/routeyard/admin/|admin/|api/v1/activity)")


@admin_only.parametrize()
@FUZZ
def test_no_server_errors_on_admin_endpoints_as_an_admin(case: Any) -> None:
    """Tenants only ever see 403 on the admin endpoints (keys, reports, re-queue, activity, webhooks); an admin
    reaches the handlers, so fuzz them as one."""
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN}"}, checks=[not_a_server_error])
