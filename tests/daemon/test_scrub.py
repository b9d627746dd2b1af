"""Masking secrets in JSON values (what agents send, before it is journaled)."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from mimird.secrets import forms, scrub, scrub_value

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# A secret with an asterisk may form again next to the "***" that masks it ("a*"
# in "aa*" gives "a***"): the mask hides the secret's place, not such look-alikes.
secrets = st.text(min_size=2, max_size=12).filter(lambda s: "*" not in s)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


@given(json_values, secrets, st.data())
def test_no_secret_is_left_in_any_string_or_key(value: Any, secret: str, data: Any) -> None:
    # Plant the secret somewhere (or not), with text around it.
    where = data.draw(st.sampled_from(["value", "key", "nowhere"]))
    if where == "value":
        value = [value, f"before {secret} after"]
    elif where == "key":
        value = {f"k{secret}": value}
    masked = scrub_value(value, {secret})
    assert not any(secret in s for s in strings(masked))
    if not any(form in s for s in strings(value) for form in forms({secret})):
        # Unchanged (the same object, unless the quick search in the JSON text was
        # fooled by an escape such as \u001f holding "00").
        assert masked == value


def test_a_value_without_secrets_is_returned_as_is() -> None:
    value = {"update": {"content": {"text": "nothing to hide here"}}, "n": [1, 2.5, None]}
    assert scrub_value(value, {"sk-secret"}) is value


def test_secrets_with_json_escapes_are_found() -> None:
    for secret in ('quo"te', "back\\slash", "new\nline", "tab\there", "ünï©ødé"):
        masked = scrub_value({"text": f"x{secret}y", secret: 1}, {secret})
        assert masked == {"text": "x***y", "***": 1}


def json_forms(secret: str) -> list[str]:
    """The secret inside a JSON string, as encoders write it."""
    ascii_form = json.dumps(secret)[1:-1]
    return [
        json.dumps(secret, ensure_ascii=False)[1:-1],
        msgspec.json.encode(secret).decode()[1:-1],
        ascii_form,
        re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), ascii_form),
    ]


TRICKY = ['pa"ss\\wörd', "back\\slash", "new\nline", "ünï©ødé", "emoji-\U0001f511-key"]


def test_a_secret_json_escaped_inside_a_string_is_masked_in_every_form() -> None:
    """Tool arguments are often JSON text in a string: the secret is escaped there."""
    for secret in TRICKY:
        for form in json_forms(secret):
            value = {"rawInput": {"arguments": f'{{"password": "{form}"}}'}}
            masked = scrub_value(value, {secret})
            assert masked == {"rawInput": {"arguments": '{"password": "***"}'}}, (secret, form)
            assert scrub(f"x {form} y", {secret}) == "x *** y"


@given(secrets, st.text(max_size=20), st.booleans())
def test_no_form_of_a_secret_survives_json_encoding_of_its_text(
    secret: str, around: str, ensure_ascii: bool
) -> None:
    text = json.dumps(f"{around}{secret}{around}", ensure_ascii=ensure_ascii)
    masked = scrub(text, {secret})
    assert not any(form in masked for form in forms({secret}))
