"""Where provider keys come from. Pooled ("credits") keys live in environment variables named by the
config; BYOK keys (a router key's or its team's own provider keys) are stored encrypted and held by a
`ByokKeyring`. The ledger records `key_ref` (`pooled:<provider>`, `byok:<id>`), never the key.

    credentials.for_job(provider, api_key_id, team) -> Credential | None

prefers a BYOK key of the job's router key, then one of its team, then the pooled key — the last only when
no BYOK key exists for that provider, or `billing.byok_fallback_to_pooled` allows falling back from BYOK keys
that cannot serve (refused in this process, or passed in `exclude`, e.g. rate limited). The credential says
who pays (`billed_to`); `fee(credential, list_cost)` is the platform fee on a BYOK call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from decimal import Decimal

from shared.config import BillingConfig, RouteyardConfig
from shared.crypto import SecretBox
from shared.errors import ConfigError
from shared.money import quantize
from shared.provider_keys import SealedProviderKey, active_provider_keys, credential_ref, key_teams
from shared.store import Store
from worker.providers.base import Credential

log = logging.getLogger("routeyard.worker")


def byok_fee(billing: BillingConfig, list_cost: Decimal | None) -> Decimal | None:
    """`byok_fee_rate` times the call's list price, as credits (None when the price is unknown)."""
    if list_cost is None:
        return None
    return quantize(billing.byok_fee_rate * list_cost)


class ByokKeyring:
    """This process's BYOK keys: ciphertexts from the store (`refresh`), each decrypted once, on first use,
    and then kept in memory. Nothing here is ever logged or shown."""

    def __init__(self, box: SecretBox | None = None) -> None:
        self._box = box
        self._by_owner: dict[tuple[str, str, str], list[SealedProviderKey]] = {}
        self._plain: dict[str, str] = {}
        self._teams: dict[str, str] = {}

    def load(self, sealed: list[SealedProviderKey], teams: Mapping[str, str]) -> None:
        """Replace the snapshot; keys no longer present are forgotten (their plaintext too)."""
        by_owner: dict[tuple[str, str, str], list[SealedProviderKey]] = {}
        for k in sealed:
            by_owner.setdefault((k.owner_kind, k.owner, k.provider), []).append(k)
        live = {k.id for k in sealed}
        self._plain = {i: s for i, s in self._plain.items() if i in live}
        self._by_owner = by_owner
        self._teams = dict(teams)

    async def refresh(self, store: Store) -> None:
        """Reload from the store (at start-up, then every so often: new, removed and disabled keys)."""
        sealed = await store.read(active_provider_keys())
        teams = await store.read(key_teams())
        if sealed and self._box is None:
            raise ConfigError("BYOK keys are stored but this process has no master key to decrypt them")
        self.load(sealed, teams)

    def team_of(self, api_key_id: str | None) -> str | None:
        return None if api_key_id is None else self._teams.get(api_key_id)

    def candidates(self, provider: str, api_key_id: str | None, team: str | None) -> list[SealedProviderKey]:
        """The router key's own keys for `provider`, then its team's, oldest first."""
        out: list[SealedProviderKey] = []
        if api_key_id is not None:
            out += self._by_owner.get(("key", api_key_id, provider), [])
        if team is not None:
            out += self._by_owner.get(("team", team, provider), [])
        return out

    def secret(self, sealed: SealedProviderKey) -> str:
        plain = self._plain.get(sealed.id)
        if plain is None:
            if self._box is None:
                raise ConfigError("no master key to decrypt BYOK keys")
            plain = self._plain[sealed.id] = self._box.decrypt(sealed.secret_enc)
        return plain

    def secrets(self) -> list[str]:
        """Every BYOK secret decrypted so far (only those can have been used), for redaction."""
        return list(self._plain.values())


class CredentialSource:
    def __init__(
        self, config: RouteyardConfig, env: Mapping[str, str] | None = None, keyring: ByokKeyring | None = None
    ) -> None:
        self._config = config
        self._env = os.environ if env is None else env
        self.keyring = keyring if keyring is not None else ByokKeyring()
        self.disabled: set[str] = set()
        """Key refs that answered 401/403 this process; routing skips their providers."""
        self._missing: frozenset[str] | None = None

    def pooled(self, provider: str) -> Credential | None:
        return self._pooled(provider)

    def _pooled(self, provider: str) -> Credential | None:
        prov = self._config.providers[provider]
        secret = self._env.get(prov.key_env) if prov.key_env else None
        if not secret and prov.simulated:
            secret = f"sim-key-{provider}"  # the farm accepts any key unless told otherwise
        if not secret:
            return None
        ref = f"pooled:{provider}"
        return None if ref in self.disabled else Credential(secret=secret, ref=ref)

    def for_job(
        self, provider: str, api_key_id: str | None, team: str | None = None, *, exclude: Collection[str] = ()
    ) -> Credential | None:
        """The key to call `provider` with for a job of router key `api_key_id` (`team`: the key's team; None
        looks it up in the keyring). `exclude`: refs not to use this time (e.g. a rate-limited BYOK key).
        None: no usable key (the job should move on to another endpoint)."""
        if team is None:
            team = self.keyring.team_of(api_key_id)
        byok = self.keyring.candidates(provider, api_key_id, team)
        for sealed in byok:
            ref = credential_ref(sealed.id)
            if ref in self.disabled or ref in exclude:
                continue
            try:
                secret = self.keyring.secret(sealed)
            except ConfigError:
                log.error("BYOK key %s cannot be decrypted with the configured master key(s); skipped", ref)
                self.disabled.add(ref)
                continue
            return Credential(secret=secret, ref=ref, billed_to="byok")
        if byok and not self._config.billing.byok_fallback_to_pooled:
            return None
        pooled = self._pooled(provider)
        return None if pooled is None or pooled.ref in exclude else pooled

    def fee(self, credential: Credential, list_cost: Decimal | None) -> Decimal | None:
        """The platform fee on this call, in credits: 0 on a pooled key (its cost is charged in full),
        `byok_fee_rate` times list price on a BYOK key (None when the price is unknown)."""
        if credential.billed_to != "byok":
            return Decimal(0)
        return byok_fee(self._config.billing, list_cost)

    async def refresh_byok(self, store: Store) -> None:
        await self.keyring.refresh(store)

    def disable(self, credential: Credential) -> None:
        self.disabled.add(credential.ref)
        self._missing = None

    def missing(self) -> frozenset[str]:
        """Providers with no usable key: the router excludes them with a reason instead of failing calls."""
        if self._missing is None:
            self._missing = frozenset(p for p in self._config.providers if self._pooled(p) is None)
        return self._missing

    def missing_for(self, api_key_id: str | None, team: str | None = None) -> frozenset[str]:
        """`missing()` for one router key's jobs: a provider with a BYOK key for them is not missing."""
        return frozenset(p for p in self._config.providers if self.for_job(p, api_key_id, team) is None)

    def secrets(self) -> list[str]:
        """Every configured secret, for redaction."""
        out = []
        for prov in self._config.providers.values():
            if prov.key_env and self._env.get(prov.key_env):
                out.append(self._env[prov.key_env])
        return out + self.keyring.secrets()
