"""Tenants in Redis: a tenant's conversations live under its own key prefix.

Tenant ``acme``'s conversation ``c-1`` is ``<redis_prefix>:t:acme:{conv:c-1}:history`` (and
``:state``, ``:dedupe:*``, ``:lock``); the ``default`` tenant — the shared ``api_key`` setting and
single-tenant installs — keeps the plain ``<redis_prefix>:{conv:c-1}:...`` keys, so installs from
before tenants existed keep their history. Two tenants may use the same conversation ids, and no
request of one tenant can name a key of another: isolation is by construction, not by a check.
The Cluster hash tag stays ``{conv:<id>}``, so one conversation's keys still share a slot.

It does not authenticate (``server/api/auth.py``) and stores no keys (``keys.py``).
"""

from __future__ import annotations

import copy
import re

from assistant.errors import AssistantError
from server.store.history import DialogStore

DEFAULT_TENANT = "default"
TENANT_PATTERN = r"[a-z0-9][a-z0-9-]{0,31}"
TENANT_RULE = "1-32 characters of lower-case letters, digits and '-', starting with a letter or digit"


class TenantError(AssistantError):
    """A tenant name that breaks :data:`TENANT_RULE`."""


def check_tenant(tenant: str) -> str:
    """Return ``tenant`` if valid. Raises :class:`TenantError` naming the rule otherwise."""
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise TenantError(f"tenant {tenant!r} is invalid; expected {TENANT_RULE}")
    return tenant


def tenant_prefix(prefix: str, tenant: str) -> str:
    """The key prefix of ``tenant``'s conversations (``prefix`` itself for the default tenant)."""
    return prefix if tenant == DEFAULT_TENANT else f"{prefix}:t:{check_tenant(tenant)}"


def scoped_store(store: DialogStore, tenant: str) -> DialogStore:
    """``store`` (of the default tenant) with its keys under ``tenant``'s prefix; the same client,
    pool and limits."""
    if tenant == DEFAULT_TENANT:
        return store
    scoped = copy.copy(store)
    scoped.prefix = tenant_prefix(store.prefix, tenant)
    return scoped
