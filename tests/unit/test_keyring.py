"""memberlist-compatible encryption and keyring tests.

The fixed vectors below are printed by tests/vectors/gen_aesgcm (Go 1.19, crypto/aes +
crypto/cipher GCM with the same layout as memberlist: version || nonce || Seal(msg [+ PKCS7 pad], aad));
tests/unit/data/aesgcm_vectors.json holds the same vectors as that program prints them.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconsul.agent.gossip.keyring import (
    ENCRYPT_OVERHEAD,
    DecryptError,
    Keyring,
    KeyringError,
    decode_key,
    decrypt,
    encode_key,
    encrypt,
    encrypted_length,
)

KEY16 = b"0123456789abcdef"
KEY24 = b"0123456789abcdef01234567"
KEY32 = b"0123456789abcdef0123456789ABCDEF"
NONCE = bytes(range(12))
AAD = bytes.fromhex("7f000001")

# (name, version, key, msg, aad, Go output hex)
GO_VECTORS = [
    (
        "v0_k16",
        0,
        KEY16,
        b"hello memberlist",
        AAD,
        "00000102030405060708090a0b955aa8717154565385446268acf2c35910c747ea17a35a5b6779fae3ffbbbb7ce883bd54940c657"
        "fcccec778778efd79",
    ),
    (
        "v1_k16",
        1,
        KEY16,
        b"hello memberlist",
        AAD,
        "01000102030405060708090a0b955aa8717154565385446268acf2c35982cadd1ffb81278a1bcc93db2f4771f8",
    ),
    (
        "v0_k32_noaad",
        0,
        KEY32,
        b"ping",
        b"",
        "00000102030405060708090a0b6095bf8ed58121e400b9f777fc1e4a3c8d911acc3707cd551dd475602c4f9a3f",
    ),
    (
        "v1_k32_noaad",
        1,
        KEY32,
        b"ping",
        b"",
        "01000102030405060708090a0b6095bf8e09750826f0214baeee9a67dac4fc6bd3",
    ),
    (
        "v0_k16_empty",
        0,
        KEY16,
        b"",
        AAD,
        "00000102030405060708090a0bed2fd40d0e642b26f836170ad08ba03dd25ae6e052012a80155364647b859108",
    ),
]


@pytest.mark.parametrize(
    ("name", "version", "key", "msg", "aad", "expected"), GO_VECTORS, ids=[v[0] for v in GO_VECTORS]
)
def test_go_vectors(name: str, version: int, key: bytes, msg: bytes, aad: bytes, expected: str) -> None:
    assert encrypt(version, key, msg, aad, nonce=NONCE).hex() == expected
    assert decrypt([key], bytes.fromhex(expected), aad) == msg


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("key", [KEY16, KEY24, KEY32])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1400])
def test_round_trip_and_length(version: int, key: bytes, size: int) -> None:
    msg = os.urandom(size)
    payload = encrypt(version, key, msg, AAD)
    assert payload[0] == version
    assert len(payload) == encrypted_length(version, size)
    assert len(payload) <= size + ENCRYPT_OVERHEAD[version]
    assert decrypt([key], payload, AAD) == msg


def test_random_nonce() -> None:
    assert encrypt(1, KEY16, b"x", b"")[1:13] != encrypt(1, KEY16, b"x", b"")[1:13]


def test_encrypted_length_and_overhead() -> None:
    assert ENCRYPT_OVERHEAD == {0: 45, 1: 29}
    assert encrypted_length(0, 0) == 45
    assert encrypted_length(0, 16) == 1 + 12 + 32 + 16
    assert encrypted_length(0, 15) == 1 + 12 + 16 + 16
    assert encrypted_length(1, 0) == 29
    assert encrypted_length(1, 100) == 129


@pytest.mark.parametrize("version", [0, 1])
def test_aad_mismatch_fails(version: int) -> None:
    payload = encrypt(version, KEY16, b"secret", b"header-a")
    with pytest.raises(DecryptError, match="no installed keys could decrypt the message"):
        decrypt([KEY16], payload, b"header-b")
    with pytest.raises(DecryptError):
        decrypt([KEY16], payload, b"")


def test_wrong_key_fails() -> None:
    payload = encrypt(1, KEY16, b"secret", AAD)
    with pytest.raises(DecryptError, match="no installed keys could decrypt the message"):
        decrypt([b"f" * 16, KEY32], payload, AAD)
    with pytest.raises(DecryptError, match="no installed keys"):
        decrypt([], payload, AAD)


def test_multi_key_decrypt() -> None:
    payload = encrypt(0, KEY24, b"gossip", AAD)
    assert decrypt([KEY16, KEY32, KEY24], payload, AAD) == b"gossip"
    # keys of invalid size are skipped, not fatal
    assert decrypt([b"short", KEY24], payload, AAD) == b"gossip"


def test_tampering_fails() -> None:
    payload = bytearray(encrypt(1, KEY16, b"gossip", AAD))
    payload[-1] ^= 1
    with pytest.raises(DecryptError):
        decrypt([KEY16], bytes(payload), AAD)


def test_malformed_payloads() -> None:
    with pytest.raises(DecryptError, match="cannot decrypt empty payload"):
        decrypt([KEY16], b"", AAD)
    with pytest.raises(DecryptError, match="unsupported encryption version 2"):
        decrypt([KEY16], b"\x02" + bytes(60), AAD)
    with pytest.raises(DecryptError, match="payload is too small to decrypt: 44"):
        decrypt([KEY16], b"\x00" + bytes(43), AAD)
    with pytest.raises(DecryptError, match="payload is too small to decrypt: 28"):
        decrypt([KEY16], b"\x01" + bytes(27), AAD)
    assert issubclass(DecryptError, ValueError)


def test_bad_padding_is_decrypt_error() -> None:
    # A v1 ciphertext relabelled v0 is a valid GCM message whose "padding" byte is too large.
    payload = encrypt(1, KEY16, b"\x00" * 16 + b"\xff", b"")
    with pytest.raises(DecryptError, match="padding"):
        decrypt([KEY16], b"\x00" + payload[1:], b"")


def test_encrypt_argument_errors() -> None:
    with pytest.raises(ValueError, match="unsupported encryption version 2"):
        encrypt(2, KEY16, b"", b"")
    with pytest.raises(ValueError, match="key size must be 16, 24 or 32 bytes"):
        encrypt(1, b"k" * 17, b"", b"")
    with pytest.raises(ValueError, match="nonce"):
        encrypt(1, KEY16, b"", b"", nonce=b"123")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=50))
def test_decrypt_fuzz_only_decrypt_error(payload: bytes, aad: bytes) -> None:
    try:
        decrypt([KEY16, KEY32], payload, aad)
    except DecryptError:
        pass


# --- base64 helpers ---------------------------------------------------------------------------


def test_encode_decode_key() -> None:
    assert encode_key(KEY16) == "MDEyMzQ1Njc4OWFiY2RlZg=="
    assert decode_key("MDEyMzQ1Njc4OWFiY2RlZg==") == KEY16
    assert decode_key("MDEyMzQ1Njc4\nOWFiY2RlZg==\n") == KEY16


@pytest.mark.parametrize("bad", ["not base64!", "MDEyMzQ1Njc4OWFiY2RlZg", "é", "MDEy-zQ1"])
def test_decode_key_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid base64 key"):
        decode_key(bad)


# --- Keyring ----------------------------------------------------------------------------------


def test_keyring_ops() -> None:
    ring = Keyring(KEY16, [KEY24, KEY16])
    assert ring.keys() == [KEY16, KEY24]
    assert ring.primary() == KEY16
    assert ring.install(KEY32) is True
    assert ring.install(KEY32) is False
    assert ring.keys() == [KEY16, KEY24, KEY32]
    ring.use(KEY32)
    assert ring.keys() == [KEY32, KEY16, KEY24]
    assert ring.primary() == KEY32
    assert ring.remove(KEY16) is True
    assert ring.remove(KEY16) is False
    assert ring.keys() == [KEY32, KEY24]
    assert KEY24 in ring and KEY16 not in ring and len(ring) == 2
    # keys() is a copy
    ring.keys().clear()
    assert len(ring) == 2
    assert "MDEy" not in repr(ring)


def test_keyring_errors() -> None:
    with pytest.raises(ValueError, match="key size must be 16, 24 or 32 bytes"):
        Keyring(b"short")
    ring = Keyring(KEY16)
    with pytest.raises(ValueError, match="key size must be 16, 24 or 32 bytes"):
        ring.install(b"x" * 33)
    with pytest.raises(KeyringError, match="requested key is not in the keyring"):
        ring.use(KEY32)
    with pytest.raises(KeyringError, match="removing the primary key is not allowed"):
        ring.remove(KEY16)
    with pytest.raises(KeyringError, match="no keys"):
        Keyring.from_keys([])


def test_keyring_encrypt_decrypt_across_rotation() -> None:
    old = Keyring(KEY16)
    new = Keyring(KEY16, [KEY32])
    new.use(KEY32)
    assert new.decrypt(old.encrypt(1, b"a", AAD), AAD) == b"a"
    with pytest.raises(DecryptError):
        old.decrypt(new.encrypt(0, b"b", AAD), AAD)


def test_keyring_from_base64() -> None:
    ring = Keyring.from_base64(encode_key(KEY16), [encode_key(KEY32)])
    assert ring.keys() == [KEY16, KEY32]
    assert Keyring.from_base64_list(ring.to_base64()) == ring
    with pytest.raises(ValueError):
        Keyring.from_base64("@@@")
    with pytest.raises(ValueError, match="key size"):
        Keyring.from_base64(encode_key(b"abc"))


def test_json_format_matches_serf() -> None:
    ring = Keyring(KEY16, [KEY32])
    # serf writes json.MarshalIndent(keys, "", "  ")
    expected = '[\n  "' + encode_key(KEY16) + '",\n  "' + encode_key(KEY32) + '"\n]'
    assert ring.to_json() == expected
    assert Keyring.from_json(expected) == ring
    assert Keyring.from_json(json.dumps([encode_key(KEY32)])).keys() == [KEY32]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "failed to decode keyring file"),
        ("{", "failed to decode keyring file"),
        ('{"a": 1}', "expected a JSON list"),
        ("[1]", "expected a JSON list"),
        ("[]", "contains no keys"),
        ('["@@"]', "failed to decode key"),
        ('["YWJj"]', "key size"),
    ],
)
def test_from_json_errors(text: str, match: str) -> None:
    with pytest.raises(KeyringError, match=match):
        Keyring.from_json(text)


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "serf" / "local.keyring"
    path.parent.mkdir()
    ring = Keyring(KEY32, [KEY16, KEY24])
    ring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == [encode_key(KEY32), encode_key(KEY16), encode_key(KEY24)]
    assert Keyring.load(path) == ring
    # overwrite in place; no temp files left behind
    ring.use(KEY16)
    ring.save(str(path))
    assert Keyring.load(str(path)).primary() == KEY16
    assert sorted(p.name for p in path.parent.iterdir()) == ["local.keyring"]


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Keyring.load(tmp_path / "missing")
    bad = tmp_path / "bad.keyring"
    bad.write_text("not json")
    with pytest.raises(KeyringError):
        Keyring.load(bad)
