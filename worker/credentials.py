"""Where provider keys come from. Pooled ("credits") keys live in environment variables named by the
config; the ledger records `key_ref`, never the key. (BYOK keys, encrypted in the store, plug in here.)"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shared.config import RouteyardConfig
from worker.providers.base import Credential


class CredentialSource:
    def __init__(self, config: RouteyardConfig, env: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._env = os.environ if env is None else env
        self.disabled: set[str] = set()
        """Key refs that answered 401/403 this process; routing skips their providers."""
        self._missing: frozenset[str] | None = None

    def pooled(self, provider: str) -> Credential | None:
        prov = self._config.providers[provider]
        secret = self._env.get(prov.key_env) if prov.key_env else None
        if not secret and prov.simulated:
            secret = f"sim-key-{provider}"  # the farm accepts any key unless told otherwise
        if not secret:
            return None
        ref = f"pooled:{provider}"
        return None if ref in self.disabled else Credential(secret=secret, ref=ref)

    def disable(self, credential: Credential) -> None:
        self.disabled.add(credential.ref)
        self._missing = None

    def missing(self) -> frozenset[str]:
        """Providers with no usable key: the router excludes them with a reason instead of failing calls."""
        if self._missing is None:
            self._missing = frozenset(p for p in self._config.providers if self.pooled(p) is None)
        return self._missing

    def secrets(self) -> list[str]:
        """Every configured secret, for redaction."""
        out = []
        for prov in self._config.providers.values():
            if prov.key_env and self._env.get(prov.key_env):
                out.append(self._env[prov.key_env])
        return out
