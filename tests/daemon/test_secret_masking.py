"""Secret masking at its edges: every secret of a set, the longest form first, a
secret at the very start of the held text, overlapping occurrences, and a chunk
that ends with a whole secret (nothing left to wait for). Each test here killed a
mutant that the other secret tests let survive (``make mutate``)."""

from __future__ import annotations

from mimird.secrets import MASK, ChunkMasker, forms, scrub, scrub_value


def feed_all(secrets: set[str], chunks: list[str]) -> list[list[tuple[int, str]]]:
    """What each feed released, then what flush released."""
    masker: ChunkMasker[int] = ChunkMasker(secrets)
    steps = [masker.feed(n, chunk) for n, chunk in enumerate(chunks)]
    return [*steps, masker.flush()]


def test_an_empty_secret_in_the_set_does_not_stop_the_others_being_masked() -> None:
    # "" hashes to 0: it comes first in the set; skipping it must not end the search.
    secrets = {"", "sk-abc123", "hunter2"}
    assert scrub("key sk-abc123, password hunter2", secrets) == "key ***, password ***"
    assert forms(secrets)
    assert "" not in forms(secrets)


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    # Longest first: masking "abc" inside "abcdef" first would leave "def" in the text.
    secrets = {"tok-abc", "tok-abcdef"}
    assert scrub("x tok-abcdef y", secrets) == "x *** y"
    assert scrub_value({"k": ["x tok-abcdef y"]}, secrets) == {"k": ["x *** y"]}


def test_forms_are_longest_first() -> None:
    found = forms({'a"b', "tok-abcdef"})
    assert [len(f) for f in found] == sorted((len(f) for f in found), reverse=True)


def test_a_chunk_that_starts_with_a_secret_is_masked() -> None:
    assert feed_all({"sk-abc123"}, ["sk-abc123 is the key"]) == [[(0, "*** is the key")], []]


def test_a_chunk_that_ends_with_a_whole_secret_is_released_at_once() -> None:
    # Only the start (not the whole) of a secret can be completed by the next chunk.
    assert feed_all({"sk-abc123"}, ["the key: sk-abc123"]) == [[(0, "the key: ***")], []]


def test_overlapping_occurrences_are_all_masked() -> None:
    # "zzz" is at 0 and at 1 of "zzzz": every character belongs to a secret.
    assert feed_all({"zzz"}, ["zzzz end"]) == [[(0, f"{MASK} end")], []]


def test_the_longest_possible_start_of_a_secret_is_held() -> None:
    # After "x ab" + "a" the held text ends with "aba", a start of "abab" (so is
    # "a"): the longest one counts, so "x ab" stays held until "b" completes it.
    steps = feed_all({"abab"}, ["x ab", "a", "b", " end"])
    assert steps[0] == []
    assert steps[1] == [], "'aba' may still become 'abab'"
    assert steps[2] == [(0, "x ***")], "'ab' may start another 'abab'"
    assert steps[3] == [(1, "***"), (2, "***"), (3, " end")]
    assert steps[4] == []


def test_a_secret_whole_in_a_later_held_chunk_is_masked_at_flush() -> None:
    # "abc" is whole in the second chunk while "yabc" may still become "yabcq": both
    # chunks are held until the flush, which must find "abc" where the held text has it.
    assert feed_all({"yabcq", "abc"}, ["y", "abc"]) == [[], [], [(0, "y"), (1, MASK)]]


def test_chunks_are_released_only_up_to_the_open_tail() -> None:
    # "xab" ends with "ab", which "cdef" completes into the secret: "a", "b" and "c"
    # may go, "xab" may not, though it is shorter than what was released before it.
    assert feed_all({"abcdef"}, ["a", "b", "c", "xab", "cdef"]) == [
        [],
        [],
        [],
        [(0, "a"), (1, "b"), (2, "c")],
        [(3, "x***"), (4, MASK)],
        [],
    ]
