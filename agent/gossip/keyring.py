"""memberlist-compatible gossip encryption (AES-GCM) and the serf keyring.

Wire format of an encrypted payload (facts from memberlist's security layer):

* 1 byte version: 0 = AES-GCM over the message plus PKCS7 padding to a 16-byte boundary
  (always 1..16 bytes of padding), 1 = AES-GCM over the message with no padding;
* 12-byte random nonce;
* GCM ciphertext followed by the 16-byte tag; the caller-supplied ``aad`` is the
  additional authenticated data (the version byte and nonce are *not* authenticated separately).

The key size picks AES-128/192/256. Decryption tries every installed key, primary first.

The keyring file (Consul's ``serf/local.keyring``) is a JSON list of standard base64 keys,
primary first, indented by two spaces, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from pyconsul.agent.fsutil import atomic_write

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCRYPT_OVERHEAD",
    "KEY_SIZES",
    "MAX_ENCRYPTION_VERSION",
    "NONCE_SIZE",
    "TAG_SIZE",
    "DecryptError",
    "Keyring",
    "KeyringError",
    "decode_key",
    "decrypt",
    "encode_key",
    "encrypt",
    "encrypted_length",
    "validate_key",
]

VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
MAX_ENCRYPTION_VERSION = 1
KEY_SIZES = (16, 24, 32)
# Worst-case bytes added by encrypt(), by version: version + nonce (+ padding) + tag.
ENCRYPT_OVERHEAD: dict[int, int] = {0: 45, 1: 29}


class DecryptError(ValueError):
    """A payload could not be decrypted (malformed, unsupported version or no matching key)."""


class KeyringError(ValueError):
    """An invalid keyring operation (unknown key, removing the primary, bad keyring file)."""


def validate_key(key: bytes) -> None:
    """Raise ``ValueError`` unless ``key`` is a valid AES key length."""
    if len(key) not in KEY_SIZES:
        raise ValueError("key size must be 16, 24 or 32 bytes")


def encode_key(key: bytes) -> str:
    """Standard (padded) base64, as used by ``consul keygen`` and the keyring file."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """Decode a standard base64 key; raise ``ValueError`` with a clear message if it is malformed."""
    if not isinstance(text, str):
        raise ValueError(f"key must be a base64 string, not {type(text).__name__}")
    # Go's base64 decoder skips CR and LF; everything else must be strict padded std base64.
    cleaned = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"invalid base64 key {text[:8]!r}...: {exc}") from None


def encrypted_length(version: int, n: int) -> int:
    """Exact size of ``encrypt(version, key, msg)`` for a message of ``n`` bytes."""
    if version >= 1:
        return VERSION_SIZE + NONCE_SIZE + n + TAG_SIZE
    padding = BLOCK_SIZE - (n % BLOCK_SIZE)
    return VERSION_SIZE + NONCE_SIZE + n + padding + TAG_SIZE


@lru_cache(maxsize=32)
def _cipher(key: bytes) -> AESGCM:
    # `cryptography` costs ~7 MiB of RSS; import it only once gossip encryption is actually used.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def encrypt(version: int, key: bytes, msg: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
    """Encrypt ``msg`` as memberlist does: ``version || nonce || GCM(msg [+ pad], aad)``.

    ``nonce`` is random unless given (tests only: never reuse a nonce with the same key).
    """
    if version not in (0, 1):
        raise ValueError(f"unsupported encryption version {version}")
    validate_key(key)
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    if version == 0:
        pad = BLOCK_SIZE - (len(msg) % BLOCK_SIZE)
        plain = bytes(msg) + bytes((pad,)) * pad
    else:
        plain = bytes(msg)
    sealed = _cipher(bytes(key)).encrypt(nonce, plain, bytes(aad) or None)
    return bytes((version,)) + nonce + sealed


def decrypt(keys: Sequence[bytes], payload: bytes, aad: bytes) -> bytes:
    """Decrypt a memberlist payload with the first key that authenticates it.

    Raises :class:`DecryptError` for an empty/short payload, an unknown version, or when no key works.
    """
    if not payload:
        raise DecryptError("cannot decrypt empty payload")
    version = payload[0]
    if version > MAX_ENCRYPTION_VERSION:
        raise DecryptError(f"unsupported encryption version {version}")
    if len(payload) < encrypted_length(version, 0):
        raise DecryptError(f"payload is too small to decrypt: {len(payload)}")
    from cryptography.exceptions import InvalidTag  # lazily, as in _cipher

    nonce = bytes(payload[VERSION_SIZE : VERSION_SIZE + NONCE_SIZE])
    sealed = bytes(payload[VERSION_SIZE + NONCE_SIZE :])
    ad = bytes(aad) or None
    for key in keys:
        if len(key) not in KEY_SIZES:
            continue
        try:
            plain = _cipher(bytes(key)).decrypt(nonce, sealed, ad)
        except InvalidTag:
            continue
        if version == 0:
            if not plain or plain[-1] > len(plain):
                raise DecryptError("invalid PKCS7 padding in decrypted payload")
            return plain[: len(plain) - plain[-1]]
        return plain
    raise DecryptError("no installed keys could decrypt the message")


class Keyring:
    """A primary key (used to encrypt; tried first to decrypt) plus secondary keys (decrypt only).

    Mirrors memberlist's keyring: installing an existing key is a no-op, and the primary key
    cannot be removed. ``repr()`` never shows key material.
    """

    __slots__ = ("_keys",)

    def __init__(self, primary: bytes, secondaries: Iterable[bytes] = ()) -> None:
        validate_key(primary)
        keys = [bytes(primary)]
        for key in secondaries:
            validate_key(key)
            if bytes(key) not in keys:
                keys.append(bytes(key))
        self._keys = keys

    @classmethod
    def from_keys(cls, keys: Sequence[bytes]) -> Keyring:
        """Build from a list whose first element is the primary key."""
        if not keys:
            raise KeyringError("keyring contains no keys")
        return cls(keys[0], keys[1:])

    @classmethod
    def from_base64(cls, primary: str, secondaries: Iterable[str] = ()) -> Keyring:
        """Build from base64 keys (e.g. the ``encrypt`` config value)."""
        return cls(decode_key(primary), [decode_key(s) for s in secondaries])

    @classmethod
    def from_base64_list(cls, keys: Sequence[str]) -> Keyring:
        """Build from base64 keys, primary first (the keyring-file order)."""
        return cls.from_keys([decode_key(s) for s in keys])

    def keys(self) -> list[bytes]:
        """All installed keys, primary first (a copy)."""
        return list(self._keys)

    def primary(self) -> bytes:
        return self._keys[0]

    def to_base64(self) -> list[str]:
        """All keys base64-encoded, primary first."""
        return [encode_key(k) for k in self._keys]

    def install(self, key: bytes) -> bool:
        """Add ``key`` as a secondary key; returns False if it was already installed."""
        validate_key(key)
        key = bytes(key)
        if key in self._keys:
            return False
        self._keys.append(key)
        return True

    def use(self, key: bytes) -> None:
        """Make an installed ``key`` the primary key."""
        key = bytes(key)
        if key not in self._keys:
            raise KeyringError("requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> bool:
        """Remove a secondary key; returns False if it was not installed. The primary cannot be removed."""
        key = bytes(key)
        if key == self._keys[0]:
            raise KeyringError("removing the primary key is not allowed")
        if key not in self._keys:
            return False
        self._keys.remove(key)
        return True

    def encrypt(self, version: int, msg: bytes, aad: bytes) -> bytes:
        """Encrypt with the primary key."""
        return encrypt(version, self._keys[0], msg, aad)

    def decrypt(self, payload: bytes, aad: bytes) -> bytes:
        """Decrypt with any installed key, primary first."""
        return decrypt(self._keys, payload, aad)

    def to_json(self) -> str:
        """The keyring-file text: a two-space indented JSON list of base64 keys, primary first."""
        return json.dumps(self.to_base64(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Keyring:
        """Parse keyring-file text; raises :class:`KeyringError` (a ``ValueError``) if it is malformed."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyringError(f"failed to decode keyring file: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise KeyringError("failed to decode keyring file: expected a JSON list of base64 strings")
        if not data:
            raise KeyringError("keyring file contains no keys")
        try:
            return cls.from_base64_list(data)
        except ValueError as exc:
            raise KeyringError(f"failed to decode key from keyring: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a keyring file (``OSError`` if unreadable, :class:`KeyringError` if malformed)."""
        with open(path, "rb") as f:
            return cls.from_json(f.read())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomically and durably replace ``path`` with this keyring (mode 0600)."""
        atomic_write(path, self.to_json().encode("ascii"), mode=0o600)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes | bytearray) and bytes(key) in self._keys

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyring) and self._keys == other._keys

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Keyring(<{len(self._keys)} keys>)"
