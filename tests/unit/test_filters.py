"""Docker's filter grammar: repeated keys OR, different keys AND, unknown keys refused."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.filters import Filters


def test_repeated_key_is_or_and_keys_are_and() -> None:
    flt = Filters.parse(["status=exited", "status=created", "name=web"])
    rows = [("exited", "web1"), ("created", "web2"), ("running", "web3"), ("exited", "db")]
    got = [
        r for r in rows if flt.match("status", lambda v, r=r: r[0] == v) and flt.name("name", r[1])
    ]
    assert got == [("exited", "web1"), ("created", "web2")]


def test_labels_are_all_required_and_label_bang_excludes() -> None:
    flt = Filters.parse(["label=a", "label=b=2", "label!=c"])
    assert flt.labels({"a": "x", "b": "2"})
    assert not flt.labels({"a": "x"})
    assert not flt.labels({"a": "x", "b": "3"})
    assert not flt.labels({"a": "x", "b": "2", "c": ""})


def test_unknown_key_and_bad_form_are_one_line_errors() -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'bogus'$"):
        Filters.parse(["bogus=1"], ("name",))
    with pytest.raises(InvalidArgument, match="expected name=value"):
        Filters.parse(["justakey"])
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        Filters.parse(["dangling=maybe"]).bool_value("dangling")


def test_api_json_forms_read_the_same() -> None:
    new = Filters.from_json('{"label": {"a=1": true, "b": false}, "status": {"exited": true}}')
    old = Filters.from_json('{"label": ["a=1"], "status": ["exited"]}')
    assert new.get("label") == old.get("label") == ["a=1"]
    assert new.get("status") == old.get("status") == ["exited"]
    assert Filters.from_json(new.to_json()).get("label") == ["a=1"]
    with pytest.raises(InvalidArgument):
        Filters.from_json("[1]")
    with pytest.raises(InvalidArgument):
        Filters.from_json('{"label": [1]}')
    assert not Filters.from_json("")


def test_name_is_a_regular_expression_and_a_bad_one_a_substring() -> None:
    assert Filters.parse(["name=^web-[0-9]$"]).name("name", "web-1")
    assert not Filters.parse(["name=^web-[0-9]$"]).name("name", "web-10")
    assert Filters.parse(["name=we("]).name("name", "awe(b")
