"""Go `flag` package semantics of agent.flags."""

from __future__ import annotations

import pytest

from pyconsul.agent.flags import FlagError, FlagSet, HelpRequested, format_duration, parse_duration


def make() -> FlagSet:
    fs = FlagSet("test")
    fs.string("node", "", "Node `name`.")
    fs.string("dc", "dc1", "Datacenter.")
    fs.int("expect", 0, "Expected servers.")
    fs.bool("server", False, "Server mode.")
    fs.duration("interval", 30.0, "Retry interval.")
    fs.string_list("join", "Address to join.")
    fs.string_list("config-file", "File.", dest="config")
    fs.string_list("config-dir", "Dir.", dest="config")
    return fs


@pytest.mark.parametrize(
    ("args", "explicit", "positional"),
    [
        ([], {}, []),
        (["-node=n1"], {"node": "n1"}, []),
        (["-node", "n1"], {"node": "n1"}, []),
        (["--node=n1"], {"node": "n1"}, []),
        (["--node", "n1"], {"node": "n1"}, []),
        (["-node="], {"node": ""}, []),
        (["-node", "-server"], {"node": "-server"}, []),  # a value may start with '-'
        (["-server"], {"server": True}, []),
        (["-server=true"], {"server": True}, []),
        (["-server=false"], {"server": False}, []),
        (["-server=0"], {"server": False}, []),
        (["-server=T"], {"server": True}, []),
        (["-server", "false"], {"server": True}, ["false"]),  # bools never take a separate value
        (["-expect=3"], {"expect": 3}, []),
        (["-expect", "-1"], {"expect": -1}, []),
        (["-expect", "0x10"], {"expect": 16}, []),
        (["-interval=1m30s"], {"interval": 90.0}, []),
        (["-interval", "500ms"], {"interval": 0.5}, []),
        (["-join", "a", "-join=b", "--join", "c"], {"join": ["a", "b", "c"]}, []),
        (["-config-file", "a.json", "-config-dir", "d", "-config-file=b.json"],
         {"config": ["a.json", "d", "b.json"]}, []),
        (["-dc", "x", "-dc", "y"], {"dc": "y"}, []),  # last wins
        (["--", "-server"], {}, ["-server"]),
        (["-server", "--", "x"], {"server": True}, ["x"]),
        (["pos", "-server"], {}, ["pos", "-server"]),  # stops at the first non-flag
        (["-server", "pos", "-node=x"], {"server": True}, ["pos", "-node=x"]),
        (["-", "-server"], {}, ["-", "-server"]),  # a lone '-' is positional
    ],
)
def test_parse(args: list[str], explicit: dict[str, object], positional: list[str]) -> None:
    res = make().parse(args)
    assert res.explicit == explicit
    assert res.positional == positional


def test_defaults_and_typed_getters() -> None:
    res = make().parse(["-join", "a"])
    assert res.str("dc") == "dc1"
    assert res.int("expect") == 0
    assert res.bool("server") is False
    assert res.float("interval") == 30.0
    assert res.list("join") == ["a"]
    assert res.list("config") == []
    assert "dc" not in res.explicit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x"], "flag provided but not defined: -x"),
        (["--nope=1"], "flag provided but not defined: -nope"),
        (["-node"], "flag needs an argument: -node"),
        (["-join"], "flag needs an argument: -join"),
        (["-expect", "abc"], 'invalid value "abc" for flag -expect: parse error'),
        (["-expect=3.5"], 'invalid value "3.5" for flag -expect: parse error'),
        (["-expect=08"], 'invalid value "08" for flag -expect: parse error'),
        (["-interval=30"], 'invalid value "30" for flag -interval: parse error'),
        (["-interval=1d"], 'invalid value "1d" for flag -interval: parse error'),
        (["-server=yes"], 'invalid boolean value "yes" for -server: parse error'),
        (["---server"], "bad flag syntax: ---server"),
        (["-=x"], "bad flag syntax: -=x"),
    ],
)
def test_errors(args: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        make().parse(args)
    assert str(info.value) == message


@pytest.mark.parametrize("arg", ["-h", "-help", "--help", "--h"])
def test_help(arg: str) -> None:
    with pytest.raises(HelpRequested):
        make().parse(["-server", arg])


def test_help_flag_can_be_defined() -> None:
    fs = FlagSet("x")
    fs.bool("h", False, "Something else.")
    assert fs.parse(["-h"]).explicit == {"h": True}


def test_redefinition_is_a_programming_error() -> None:
    fs = FlagSet("x")
    fs.bool("a", False, "")
    with pytest.raises(ValueError):
        fs.string("a", "", "")


def test_usage_layout() -> None:
    fs = FlagSet("x")
    fs.bool("v", False, "Verbose.")
    fs.string("node", "", "Node `name` to use.")
    fs.string("dc", "dc1", "Datacenter.")
    fs.int("expect", 3, "Servers.")
    fs.duration("interval", 90.0, "Interval.")
    fs.string_list("join", "Join address.")
    fs.bool("server", True, "Server.")
    assert fs.usage() == (
        '  -dc string\n    \tDatacenter. (default "dc1")\n'
        "  -expect int\n    \tServers. (default 3)\n"
        "  -interval duration\n    \tInterval. (default 1m30s)\n"
        "  -join value\n    \tJoin address.\n"
        "  -node name\n    \tNode name to use.\n"
        "  -server\n    \tServer. (default true)\n"
        "  -v\tVerbose.\n"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("72h", 259200.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("-2s", -2.0),
        ("+1m", 60.0),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("10ns", 1e-8),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("30", 'time: missing unit in duration "30"'),
        ("1h30", 'time: missing unit in duration "1h30"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        (".s", 'time: invalid duration ".s"'),
        ("-", 'time: invalid duration "-"'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (30, "30s"), (90, "1m30s"), (0.5, "500ms"), (259200, "72h0m0s"), (3600, "1h0m0s"),
     (1.5, "1.5s"), (-2, "-2s"), (1e-6, "1µs")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
