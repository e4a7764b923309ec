"""The Go-generated vector files exist, parse, and agree with the tests that use them.

tests/vectors/gen_lzw and tests/vectors/gen_aesgcm print these files (Go is not needed here; see
tests/vectors/README.md for how to regenerate them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent.gossip.keyring import decrypt, encrypt
from tests.unit.test_keyring import GO_VECTORS

DATA = Path(__file__).parent / "data"
VECTORS = Path(__file__).parents[1] / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    data = json.loads((DATA / name).read_text())
    assert isinstance(data, list) and data
    return data


@pytest.mark.parametrize(
    ("name", "program"), [("lzw_vectors.json", "gen_lzw"), ("aesgcm_vectors.json", "gen_aesgcm")]
)
def test_vector_file_parses_and_its_generator_is_committed(name: str, program: str) -> None:
    vectors = _load(name)
    assert all(isinstance(v["name"], str) and bytes.fromhex(v["output_hex"]) for v in vectors)
    assert len({v["name"] for v in vectors}) == len(vectors)
    source = (VECTORS / program / "main.go").read_text()
    assert "package main" in source and name in source


def test_aesgcm_file_matches_the_inlined_keyring_vectors() -> None:
    by_name = {v["name"]: v for v in _load("aesgcm_vectors.json")}
    assert set(by_name) == {v[0] for v in GO_VECTORS}
    for name, version, key, msg, aad, expected in GO_VECTORS:
        v = by_name[name]
        assert (v["version"], bytes.fromhex(v["key_hex"]), bytes.fromhex(v["msg_hex"])) == (version, key, msg)
        assert (bytes.fromhex(v["aad_hex"]), v["output_hex"]) == (aad, expected)


@pytest.mark.parametrize("vec", _load("aesgcm_vectors.json"), ids=lambda v: str(v["name"]))
def test_aesgcm_file_vectors(vec: dict[str, Any]) -> None:
    key, msg, aad = (bytes.fromhex(vec[k]) for k in ("key_hex", "msg_hex", "aad_hex"))
    out = encrypt(vec["version"], key, msg, aad, nonce=bytes.fromhex(vec["nonce_hex"]))
    assert out.hex() == vec["output_hex"]
    assert decrypt([key], out, aad) == msg
