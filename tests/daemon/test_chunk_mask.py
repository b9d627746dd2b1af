"""ChunkMasker: secrets split across streamed chunks never reach the journal in
pieces, and chunks are held back only as long as needed."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mimird.secrets import ChunkMasker

SECRET = "sk-abc123"


def run(chunks: list[str], secrets: set[str]) -> list[str]:
    masker: ChunkMasker[int] = ChunkMasker(secrets)
    out: list[tuple[int, str]] = []
    for n, chunk in enumerate(chunks):
        out += masker.feed(n, chunk)
    out += masker.flush()
    assert [n for n, _ in out] == list(range(len(chunks))), "every chunk, once, in order"
    return [text for _, text in out]


def test_a_secret_split_over_three_chunks_is_masked_in_each() -> None:
    texts = run(["the key: sk-", "abc", "123 is set"], {SECRET})
    assert texts == ["the key: ***", "***", "*** is set"]


def test_chunks_without_a_possible_secret_pass_at_once() -> None:
    masker: ChunkMasker[int] = ChunkMasker({SECRET})
    assert masker.feed(0, "hello ") == [(0, "hello ")]
    assert masker.feed(1, "the s") == [], "'s' could start the secret"
    assert masker.feed(2, "ky is blue") == [(1, "the s"), (2, "ky is blue")]


def test_a_piece_is_masked_after_the_chunks_before_it_were_released() -> None:
    # "sk-abc123" ends in chunk 1, whose end ("s") may start another: chunk 0 goes,
    # chunk 1 stays held, and must keep its piece masked.
    texts = run(["xx sk-ab", "c123 s", "k-abc123!"], {SECRET})
    assert texts == ["xx ***", "*** ***", "***!"]


def test_without_secrets_nothing_is_held() -> None:
    masker: ChunkMasker[int] = ChunkMasker(set())
    assert masker.feed(0, "s") == [(0, "s")]


@settings(max_examples=500)
@given(
    st.lists(st.text(alphabet="sk-abc123 x", max_size=8), max_size=12),
    st.sampled_from([{SECRET}, {SECRET, "abc"}, {"k-a", "3 x"}]),
)
def test_no_released_chunk_holds_any_piece_of_a_secret_of_the_whole(
    chunks: list[str], secrets: set[str]
) -> None:
    texts = run(chunks, secrets)
    whole = "".join(chunks)
    # Every character of the whole text that belongs to a secret is masked: the
    # unmasked text left in the released chunks is exactly the text outside them.
    covered = [False] * len(whole)
    for secret in secrets:
        start = whole.find(secret)
        while start >= 0:
            covered[start : start + len(secret)] = [True] * len(secret)
            start = whole.find(secret, start + 1)
    outside = "".join(c for c, hidden in zip(whole, covered, strict=True) if not hidden)
    assert "".join(t.replace("***", "") for t in texts) == outside


def test_a_json_escaped_secret_split_across_chunks_is_masked() -> None:
    secret = 'pa"ss\\wörd'
    escaped = json.dumps(secret)[1:-1]  # pa\"ss\\w\u00f6rd
    texts = run([f'{{"p": "{escaped[:5]}', f'{escaped[5:]}"}}'], {secret})
    assert texts == ['{"p": "***', '***"}']
