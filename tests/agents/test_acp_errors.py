"""The ACP boundary: Mimir's domain errors become ACP error objects in one place."""

from __future__ import annotations

import pytest

from mimird.agents.acp import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    AcpError,
    map_exceptions,
)
from mimird.errors import FileAccessFailed, FileMissing, FileRefused, MimirError, OutsideWorkspace


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (OutsideWorkspace("/etc/passwd is outside the session's workspace"), INVALID_PARAMS),
        (FileRefused("src is a directory"), INVALID_PARAMS),
        (FileMissing("nope.txt does not exist"), RESOURCE_NOT_FOUND),
        (FileAccessFailed("cannot read a.txt: Permission denied"), INTERNAL_ERROR),
    ],
)
def test_a_domain_error_becomes_the_acp_error_of_its_kind(error: MimirError, code: int) -> None:
    with pytest.raises(AcpError) as mapped, map_exceptions():
        raise error
    assert (mapped.value.code, mapped.value.message) == (code, error.message)
    assert mapped.value.__cause__ is error


def test_other_exceptions_pass_the_boundary_unchanged() -> None:
    with pytest.raises(KeyError), map_exceptions():
        raise KeyError("not Mimir's")
