"""The masking core on the edge cases the rules name: escapes, look-alikes, types, exactness."""

from __future__ import annotations

import json

import pytest

from streamer.masking import Masked, Reason, Rejected, mask_bytes, mask_event
from streamer.policy import KeyPolicy, Policy


def masked(raw: str | bytes, keys: KeyPolicy | None = None) -> Masked:
    data = raw.encode() if isinstance(raw, str) else raw
    result = mask_event(data, keys) if keys else mask_event(data)
    assert isinstance(result, Masked), result
    return result


def public(raw: str) -> str:
    return masked(raw).public.decode()


def archive(raw: str) -> str:
    return masked(raw).archive.decode()


@pytest.mark.parametrize(
    "value", ['{"k":"v"}', "[1,2]", '"s"', "42", "-1.5e-3", "true", "false", "null", "{}", "[]"]
)
def test_every_json_type_is_replaced_whole(value: str) -> None:
    assert (
        public(f'{{"_secrets":{value},"_masked":{value}}}') == '{"_secrets":"***","_masked":"***"}'
    )
    assert archive(f'{{"_secrets":{value},"_masked":{value}}}') == (
        f'{{"_secrets":"***","_masked":{value}}}'
    )


@pytest.mark.parametrize(
    "name", ["\\u005fsecrets", "_\\u0073ecrets", "\\u005F\\u0073\\u0065crets", "_secret\\u0073"]
)
def test_escaped_key_names_are_the_key(name: str) -> None:
    raw = f'{{"{name}":"hunter2","ok":1}}'
    assert public(raw) == f'{{"{name}":"***","ok":1}}'
    assert archive(raw) == f'{{"{name}":"***","ok":1}}'


@pytest.mark.parametrize(
    "name",
    [
        "_Secrets",
        "secrets",
        "_secrets_",
        "_secrets ",
        " _masked",
        "_MASKED",
        "x_secrets",
        "_secret",
        "__secrets",
    ],
)
def test_look_alike_names_are_not_sensitive(name: str) -> None:
    raw = json.dumps({name: {"v": "keep"}}).encode()
    result = masked(raw)
    assert result.public == raw
    assert result.archive == raw
    assert result.count(Policy.PUBLIC) == 0


def test_sensitive_names_as_values_or_prose_are_kept() -> None:
    raw = (
        '{"a":"_secrets","b":"see _masked and _secrets","c":["_secrets"],'
        '"d":"${workflow.input._secrets.k}"}'
    )
    assert public(raw) == raw
    assert archive(raw) == raw


def test_escaped_quotes_and_backslashes_do_not_confuse_string_bounds() -> None:
    raw = r'{"a":"x\"_secrets\" is \\","_secrets":"p\"q\\","b":"\\\"","_masked":"\u005f"}'
    assert public(raw) == r'{"a":"x\"_secrets\" is \\","_secrets":"***","b":"\\\"","_masked":"***"}'


def test_exactness_big_numbers_unicode_order_and_spacing() -> None:
    raw = (
        '{ "z" : 123456789012345678901234567890 , "y":0.10000000000000000555111512312578270211,'
        ' "x":1e400, "w":-0.0, "v":"\\u00e9\u00e9\U0001f600\\ud83d\\ude00",'
        ' "_secrets" :\n {"a":1} ,'
        ' "a":[1E+2,  2]}'
    )
    out = public(raw)
    assert out == raw.replace('{"a":1}', '"***"')
    assert archive(raw) == out


def test_clean_events_come_back_as_the_same_bytes() -> None:
    raw = b'{"b":1,"a":{"secrets":"x","maskedEmail":"m@example.com"},"n":1.50}'
    result = masked(raw)
    assert result.public is raw
    assert result.archive is raw
    assert result.redactions == {}


def test_duplicate_member_names_all_masked() -> None:
    raw = '{"_secrets":"first","_secrets":"second","x":{"_masked":1,"_masked":2}}'
    assert (
        public(raw) == '{"_secrets":"***","_secrets":"***","x":{"_masked":"***","_masked":"***"}}'
    )
    assert archive(raw) == '{"_secrets":"***","_secrets":"***","x":{"_masked":1,"_masked":2}}'
    assert masked(raw).redactions[Policy.PUBLIC] == {"_secrets": 2, "_masked": 2}


def test_secrets_inside_masked_destroyed_in_archive_and_counted_once_in_public() -> None:
    raw = '{"_masked":{"k":"v","_secrets":{"pin":"0000","_masked":"m"},"l":[{"_secrets":1}]}}'
    result = masked(raw)
    assert result.public == b'{"_masked":"***"}'
    assert result.archive == b'{"_masked":{"k":"v","_secrets":"***","l":[{"_secrets":"***"}]}}'
    assert result.redactions == {Policy.PUBLIC: {"_masked": 1}, Policy.ARCHIVE: {"_secrets": 2}}


def test_masked_under_secrets_is_gone_in_both() -> None:
    raw = '{"_secrets":{"_masked":"m"}}'
    assert public(raw) == archive(raw) == '{"_secrets":"***"}'


def test_json_text_inside_strings_is_masked_and_stays_a_string() -> None:
    inner = json.dumps({"_secrets": {"k": "v"}, "n": 1, "_masked": "m"})
    raw = json.dumps({"input": inner, "deeper": json.dumps({"s": inner})})
    out = json.loads(public(raw))
    assert json.loads(out["input"]) == {"_secrets": "***", "n": 1, "_masked": "***"}
    assert json.loads(json.loads(out["deeper"])["s"]) == {
        "_secrets": "***",
        "n": 1,
        "_masked": "***",
    }
    arc = json.loads(archive(raw))
    assert json.loads(arc["input"]) == {"_secrets": "***", "n": 1, "_masked": "m"}


def test_json_text_with_escaped_key_inside_string() -> None:
    raw = json.dumps({"input": '{"\\u005fsecrets": "v"}'})
    assert "v" not in json.loads(public(raw))["input"].replace("\\u005fsecrets", "")


def test_unparseable_text_using_a_key_fails_closed() -> None:
    raw = json.dumps({"input": '{"_secrets": "v", truncated', "output": "{_secrets=x}, b={y"})
    result = masked(raw)
    assert json.loads(result.public) == {"input": "***", "output": "***"}
    assert result.redactions[Policy.PUBLIC] == {"_secrets": 2}


def test_archive_keeps_unparseable_text_that_only_has_masked() -> None:
    raw = json.dumps({"output": "{_masked=a, b}, c={"})
    assert json.loads(public(raw)) == {"output": "***"}
    assert archive(raw) == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", Reason.INVALID_JSON),
        (b"   ", Reason.INVALID_JSON),
        (b"not json", Reason.INVALID_JSON),
        (b'{"a":1', Reason.INVALID_JSON),
        (b'{"a":1} {"b":2}', Reason.INVALID_JSON),
        (b'{"a":NaN}', Reason.INVALID_JSON),
        (b'{"a":Infinity}', Reason.INVALID_JSON),
        (b"{'a':1}", Reason.INVALID_JSON),
        (b'{"_secrets":"x",}', Reason.INVALID_JSON),
        (b"[1,2]", Reason.NOT_OBJECT),
        (b'"_secrets"', Reason.NOT_OBJECT),
        (b"null", Reason.NOT_OBJECT),
        (b'{"a":"\xff"}', Reason.NOT_UTF8),
        (b"\xfe\xff", Reason.NOT_UTF8),
    ],
)
def test_rejections(raw: bytes, reason: Reason) -> None:
    result = mask_event(raw)
    assert isinstance(result, Rejected)
    assert result.reason is reason


def test_rejection_detail_carries_no_payload() -> None:
    result = mask_event(b'{"_secrets":"CANARY-hunter2" oops}')
    assert isinstance(result, Rejected)
    assert "CANARY" not in result.detail
    assert "hunter2" not in repr(result)


@pytest.mark.parametrize("depth", [100, 900, 5000, 100_000])
def test_deep_nesting_is_masked_or_rejected_never_a_crash(depth: int) -> None:
    raw = ('{"a":' * depth + '{"_secrets":"CANARY"}' + "}" * depth).encode()
    result = mask_event(raw)
    if isinstance(result, Rejected):
        assert result.reason is Reason.TOO_DEEP
    else:
        assert b"CANARY" not in result.public
        assert b"CANARY" not in result.archive


def test_deep_nesting_inside_a_secret_value() -> None:
    raw = ('{"_secrets":' + "[" * 800 + "]" * 800 + "}").encode()
    result = mask_event(raw)
    assert isinstance(result, Masked)
    assert result.public == b'{"_secrets":"***"}'


def test_idempotent_with_counts_of_zero_the_second_time() -> None:
    raw = (
        '{"_secrets":{"a":1},"s":"{_secrets={k=v}, _masked=z}",'
        '"j":"{\\"_masked\\":[1],\\"_secrets\\":2}","x":"{_secrets=a, b}, c"}'
    )
    once = masked(raw)
    for policy, out in ((Policy.PUBLIC, once.public), (Policy.ARCHIVE, once.archive)):
        again = masked(out)
        assert (again.public if policy is Policy.PUBLIC else again.archive) == out
        assert again.count(policy) == 0


def test_configured_extra_keys() -> None:
    keys = KeyPolicy(frozenset({"_secrets", "password"}), frozenset({"_masked", "pii"}))
    result = masked('{"password":"p","pii":{"n":1},"\\u0070assword":"q"}', keys)
    assert result.public == b'{"password":"***","pii":"***","\\u0070assword":"***"}'
    assert result.archive == b'{"password":"***","pii":{"n":1},"\\u0070assword":"***"}'


def test_key_policy_rejects_overlap_and_empty() -> None:
    with pytest.raises(ValueError, match="both"):
        KeyPolicy(frozenset({"a"}), frozenset({"a"}))
    with pytest.raises(ValueError, match="empty"):
        KeyPolicy(frozenset({""}), frozenset({"_masked"}))


def test_mask_text_works_on_any_json_value() -> None:
    text, counts = mask_bytes(b'[{"_secrets":1}]', KeyPolicy(), Policy.PUBLIC)
    assert text == b'[{"_secrets":"***"}]'
    assert counts == {"_secrets": 1}


@pytest.mark.parametrize(
    ("raw", "expected_public", "expected_archive"),
    [
        (  # brackets inside strings of a flat secret value
            '{"_secrets":{"a":"}{][","b":["]"]},"k":1}',
            '{"_secrets":"***","k":1}',
            '{"_secrets":"***","k":1}',
        ),
        (  # nested containers under a kept _masked, with a _secrets inside
            '{"_masked":{"a":[{"b":"x"}],"_secrets":[[1],[2]]},"k":[1]}',
            '{"_masked":"***","k":[1]}',
            '{"_masked":{"a":[{"b":"x"}],"_secrets":"***"},"k":[1]}',
        ),
        (  # one mention is a value, not a member: the general path takes over
            '{"_secrets":{"a":1},"note":"_secrets"}',
            '{"_secrets":"***","note":"_secrets"}',
            '{"_secrets":"***","note":"_secrets"}',
        ),
        (  # a look-alike member name containing a real one
            '{"x_secrets":1,"_secrets":2}',
            '{"x_secrets":1,"_secrets":"***"}',
            '{"x_secrets":1,"_secrets":"***"}',
        ),
    ],
)
def test_fast_and_general_paths_agree(
    raw: str, expected_public: str, expected_archive: str
) -> None:
    assert public(raw) == expected_public
    assert archive(raw) == expected_archive
