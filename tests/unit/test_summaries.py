"""Java map text (``Map.toString()``), the server's default rendering of summary input/output."""

from __future__ import annotations

import pytest

from streamer.summaries import mask_java_map

BOTH = frozenset({"_secrets", "_masked"})


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("{}", "{}", {}),
        ("{a=1}", "{a=1}", {}),
        ("{_secrets=x}", "{_secrets=***}", {"_secrets": 1}),
        ("{_secrets=}", "{_secrets=***}", {"_secrets": 1}),
        ("{a=b=c, _masked={x=1, y=[1, 2]}}", "{a=b=c, _masked=***}", {"_masked": 1}),
        (
            "{l=[{_secrets=1}, {_secrets=[a, b]}]}",
            "{l=[{_secrets=***}, {_secrets=***}]}",
            {"_secrets": 2},
        ),
        ("{_masked={_secrets=1}}", "{_masked=***}", {"_masked": 1}),
        ("{_secrets=***, n=null}", "{_secrets=***, n=null}", {}),
        ("[{_secrets=1}]", "[{_secrets=***}]", {"_secrets": 1}),
        (
            "{secrets=x, _secrets_=y, url=https://h/p?a=1&b=2}",
            "{secrets=x, _secrets_=y, url=https://h/p?a=1&b=2}",
            {},
        ),
    ],
)
def test_masks_values_of_replaced_keys(text: str, expected: str, counts: dict[str, int]) -> None:
    found: dict[str, int] = {}
    assert mask_java_map(text, BOTH, found) == expected
    assert found == counts


def test_archive_keeps_masked_but_not_secrets_inside_it() -> None:
    found: dict[str, int] = {}
    out = mask_java_map("{_masked={k=v, _secrets=p}}", frozenset({"_secrets"}), found)
    assert out == "{_masked={k=v, _secrets=***}}"
    assert found == {"_secrets": 1}


@pytest.mark.parametrize(
    "text",
    [
        "{_secrets=x}, b={y}",  # a value holding "}, b={" cannot be told from structure
        "{a=x, _secrets=${workflow.input.k}}",
        "{_secrets=[unclosed}",
        "{a}",
        "{a=1,b=2",
        "not a map",
        "{" * 300 + "}" * 300,
    ],
)
def test_ambiguous_text_is_reported(text: str) -> None:
    found: dict[str, int] = {}
    assert mask_java_map(text, BOTH, found) is None
    assert found == {}
