"""BYOK: provider keys stored encrypted, chosen per job (the router key's own, then its team's, then pooled),
decrypted once, billed with a fee; and master-key rotation over every encrypted column."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ry_helpers import TEST_CONFIG, make_config
from sqlalchemy import Column, MetaData, String, Table, Text, select

from shared.crypto import SecretBox
from shared.errors import ConfigError, InputError
from shared.keys import KeyStore
from shared.provider_keys import ProviderKeyStore, SealedProviderKey, fingerprint
from shared.secret_columns import encrypted_columns, register, rotate_all
from shared.store import Store
from shared.tables_keys import ProviderKey
from worker.credentials import ByokKeyring, CredentialSource, byok_fee
from worker.providers.base import Credential

SECRET_TEAM = "sk-team-openai-0123456789abcdef"
SECRET_KEY = "sk-key-openai-fedcba9876543210"
provider_keys = ProviderKey.__table__  # type: ignore[attr-defined]


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([SecretBox.new_key()])


def _dump(store: Store) -> str:
    return repr(store.read_sync(lambda c: [tuple(r) for r in c.execute(select(provider_keys)).all()]))


async def test_provider_keys_are_encrypted_listed_without_secrets_and_removed(store: Store, box: SecretBox) -> None:
    key, _ = await KeyStore(store).create("ci", team="ml")
    pks = ProviderKeyStore(store, box)
    team_key = await pks.add("alpha", "team", "ml", SECRET_TEAM + "\n", label="main")
    own = await pks.add("alpha", "key", key.id, SECRET_KEY)
    assert team_key.fingerprint == fingerprint(SECRET_TEAM) and team_key.ref == f"byok:{team_key.id}"
    dump = _dump(store)
    assert SECRET_TEAM not in dump and SECRET_KEY not in dump
    listed = await pks.list()
    assert [k.id for k in listed] == [team_key.id, own.id]
    assert SECRET_TEAM not in repr(listed)
    with pytest.raises(InputError, match="no router key"):
        await pks.add("alpha", "key", "key_nope", "sk-x")
    with pytest.raises(InputError, match="empty"):
        await pks.add("alpha", "team", "ml", "  ")
    assert await pks.remove(team_key.id) and not await pks.remove(team_key.id)
    assert [k.id for k in await pks.list()] == [own.id]
    removed = [k for k in await pks.list(include_removed=True) if k.id == team_key.id]
    assert removed[0].removed_at is not None and removed[0].disabled
    enc = store.read_sync(
        lambda c: c.execute(select(provider_keys.c.secret_enc).where(provider_keys.c.id == team_key.id)).scalar_one()
    )
    assert enc is None  # the ciphertext is gone, the row stays for the ledger's references


class CountingBox(SecretBox):
    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.decrypts = 0

    def decrypt(self, token: str) -> str:
        self.decrypts += 1
        return super().decrypt(token)


def _sealed(box: SecretBox, pid: str, kind: str, owner: str, secret: str, provider: str = "alpha") -> SealedProviderKey:
    return SealedProviderKey(pid, provider, kind, owner, box.encrypt(secret))


def _source(box: SecretBox, *, fallback: bool = True, env: dict[str, str] | None = None) -> CredentialSource:
    # alpha as a real provider: its pooled key comes from the environment or not at all
    text = TEST_CONFIG.replace(
        'base_url = "sim://alpha"', 'base_url = "https://alpha.invalid/v1"\nkey_env = "ALPHA_KEY"'
    )
    if not fallback:
        text = "[billing]\nbyok_fallback_to_pooled = false\n" + text
    keyring = ByokKeyring(box)
    keyring.load(
        [
            _sealed(box, "pvk_team", "team", "ml", SECRET_TEAM),
            _sealed(box, "pvk_key", "key", "key_a", SECRET_KEY),
            _sealed(box, "pvk_beta", "team", "ml", "sk-team-beta-0000000000", provider="beta"),
        ],
        {"key_a": "ml", "key_b": "ml"},
    )
    return CredentialSource(
        make_config(text), env={"ALPHA_KEY": "sk-pooled-alpha-1111111111"} if env is None else env, keyring=keyring
    )


def test_for_job_prefers_the_keys_own_then_the_team_then_pooled() -> None:
    box = CountingBox([SecretBox.new_key()])
    creds = _source(box)
    own = creds.for_job("alpha", "key_a", "ml")
    assert own is not None and (own.secret, own.ref, own.billed_to) == (SECRET_KEY, "byok:pvk_key", "byok")
    team = creds.for_job("alpha", "key_b")  # team looked up from the keyring
    assert team is not None and (team.secret, team.ref) == (SECRET_TEAM, "byok:pvk_team")
    pooled = creds.for_job("alpha", "key_c", None)  # no BYOK key: the pooled key, billed as credits
    assert pooled is not None and (pooled.ref, pooled.billed_to) == ("pooled:alpha", "credits")
    assert creds.for_job("alpha", None) == pooled
    assert creds.for_job("gamma", "key_a") is not None  # simulated providers accept a placeholder pooled key
    # decrypted once, then served from memory
    for _ in range(50):
        creds.for_job("alpha", "key_a", "ml")
    assert box.decrypts == 2
    assert SECRET_KEY in creds.secrets() and SECRET_TEAM in creds.secrets()
    assert "sk-pooled-alpha-1111111111" in creds.secrets()
    assert SECRET_KEY not in repr(own) and "byok" in repr(own)
    assert creds.pooled("alpha") == pooled  # the pooled path is unchanged


def test_a_refused_byok_key_falls_back_only_when_allowed() -> None:
    box = SecretBox([SecretBox.new_key()])
    creds = _source(box)
    first = creds.for_job("alpha", "key_a", "ml")
    assert first is not None
    creds.disable(first)  # the provider answered 401
    second = creds.for_job("alpha", "key_a", "ml")
    assert second is not None and second.ref == "byok:pvk_team"
    assert creds.for_job("alpha", "key_a", "ml", exclude={second.ref}) == creds.pooled("alpha")
    strict = _source(box, fallback=False)
    assert strict.for_job("alpha", "key_a", "ml", exclude={"byok:pvk_key", "byok:pvk_team"}) is None
    assert strict.for_job("alpha", "key_zzz") is not None  # no BYOK key at all: pooled as usual
    # a provider with no pooled key is usable by a key whose team brought its own
    no_pool = _source(box, env={})
    assert "alpha" in no_pool.missing()
    assert "alpha" not in no_pool.missing_for("key_a") and "alpha" in no_pool.missing_for("key_zzz")


def test_an_undecryptable_byok_key_is_skipped_not_leaked(caplog: pytest.LogCaptureFixture) -> None:
    other = SecretBox([SecretBox.new_key()])
    keyring = ByokKeyring(SecretBox([SecretBox.new_key()]))
    keyring.load([_sealed(other, "pvk_x", "key", "key_a", SECRET_KEY)], {})
    creds = CredentialSource(make_config(), env={}, keyring=keyring)
    cred = creds.for_job("alpha", "key_a")
    assert cred is not None and cred.ref == "pooled:alpha"  # fell back (allowed by default)
    assert "byok:pvk_x" in caplog.text and SECRET_KEY not in caplog.text


def test_fee_is_a_share_of_list_price_as_credits() -> None:
    creds = _source(SecretBox([SecretBox.new_key()]))
    billing = make_config().billing
    assert billing.byok_fee_rate == Decimal("0.05")
    assert byok_fee(billing, Decimal("0.0123")) == Decimal("0.000615")
    assert byok_fee(billing, None) is None  # unknown price, unknown fee
    assert creds.fee(Credential("s", "byok:x", "byok"), Decimal("2")) == Decimal("0.1")
    assert creds.fee(Credential("s", "pooled:alpha"), Decimal("2")) == 0


async def test_keyring_refreshes_from_the_store(store: Store, box: SecretBox) -> None:
    key, _ = await KeyStore(store).create("ci", team="ml")
    pks = ProviderKeyStore(store, box)
    added = await pks.add("beta", "team", "ml", SECRET_TEAM)
    creds = CredentialSource(make_config(), env={}, keyring=ByokKeyring(box))
    await creds.refresh_byok(store)
    got = creds.for_job("beta", key.id)
    assert got is not None and got.secret == SECRET_TEAM and got.billed_to == "byok"
    await pks.remove(added.id)
    await creds.refresh_byok(store)
    assert creds.for_job("beta", key.id) == creds.pooled("beta")
    assert SECRET_TEAM not in creds.secrets()  # forgotten with the key
    await pks.add("beta", "team", "ml", SECRET_TEAM)
    with pytest.raises(ConfigError, match="no master key"):
        await CredentialSource(make_config(), env={}).refresh_byok(store)


# ---------------------------------------------------------------------------------------------- rotation
async def test_rotation_reencrypts_every_registered_column_in_one_transaction(store: Store) -> None:
    old, new = SecretBox.new_key(), SecretBox.new_key()
    old_box = SecretBox([old])
    await KeyStore(store).create("ci", team="ml")
    pks = ProviderKeyStore(store, old_box)
    await pks.add("alpha", "team", "ml", SECRET_TEAM)
    await pks.add("beta", "team", "ml", SECRET_KEY)
    removed = await pks.add("gamma", "team", "ml", "sk-gone-000000000000")
    await pks.remove(removed.id)
    # another engineer's table (webhook secrets): registered, not on SQLModel.metadata
    extra = Table("ry_test_hooks", MetaData(), Column("id", String(40), primary_key=True), Column("secret_enc", Text))
    extra.create(store.engine, checkfirst=True)
    try:
        store.write_sync(
            lambda c, d: c.execute(extra.insert(), [{"id": "wh1", "secret_enc": old_box.encrypt("whsec_abc")}])
        )
        register("ry_test_hooks", "secret_enc")
        assert {str(c) for c in encrypted_columns()} >= {"provider_keys.secret_enc", "ry_test_hooks.secret_enc"}

        both = SecretBox([new, old])
        counts = store.write_sync(rotate_all(both, verify_with=SecretBox([new])))
        assert counts == {"provider_keys.secret_enc": 2, "ry_test_hooks.secret_enc": 1}
        # the old key can go: everything decrypts with the new one alone
        only_new = ByokKeyring(SecretBox([new]))
        from shared.provider_keys import active_provider_keys

        sealed = await store.read(active_provider_keys())
        only_new.load(sealed, {})
        assert sorted(only_new.secret(s) for s in sealed) == sorted([SECRET_TEAM, SECRET_KEY])
        hook = store.read_sync(lambda c: c.execute(select(extra.c.secret_enc)).scalar_one())
        assert SecretBox([new]).decrypt(hook) == "whsec_abc"

        # a secret no configured key can read aborts the rotation and changes nothing
        stray = SecretBox([SecretBox.new_key()])
        store.write_sync(
            lambda c, d: c.execute(extra.insert(), [{"id": "wh2", "secret_enc": stray.encrypt("whsec_x")}])
        )
        before = _dump(store)
        with pytest.raises(ConfigError, match=r"ry_test_hooks\.secret_enc row wh2"):
            store.write_sync(rotate_all(SecretBox([SecretBox.new_key(), new])))
        assert _dump(store) == before
    finally:
        from shared import secret_columns

        secret_columns._registered.clear()
        extra.drop(store.engine)
