"""``contains``, ``icontains``, ``endswith`` and ``iexact`` on Unicode fields: checked by
query.lua over the candidates (no index answers them), the i- forms folding ASCII letters
only; refused on other fields and for values that are not text."""

from __future__ import annotations

import pytest
import redis

from repocket import ActiveRecord, attributes, errors


class Book(ActiveRecord):
    class Meta:
        namespace = "textlookups"

    title = attributes.Unicode(index=True)
    note = attributes.Unicode(null=True)
    pages = attributes.Integer(index=True)


TITLES = ["The Hobbit", "the hobbit", "Hobbit Tales", "ÉTÉ été", "Dune", "50% off_", ""]


@pytest.fixture
def books(client: redis.Redis) -> list[Book]:
    return [Book.create(title=t, note=None if i % 2 else t.upper(), pages=i)
            for i, t in enumerate(TITLES)]


@pytest.mark.parametrize(("lookup", "value", "expected"), [
    ("contains", "obbit", {"The Hobbit", "the hobbit", "Hobbit Tales"}),
    ("contains", "Hobbit", {"The Hobbit", "Hobbit Tales"}),
    ("contains", "%", {"50% off_"}),  # no pattern characters: % and _ are letters here
    ("contains", ".", set()),
    ("contains", "", set(TITLES)),
    ("icontains", "HOBBIT", {"The Hobbit", "the hobbit", "Hobbit Tales"}),
    ("icontains", "été", {"ÉTÉ été"}),  # É is not ASCII: compared exactly
    ("icontains", "ÉTÉ", {"ÉTÉ été"}),
    ("endswith", "hobbit", {"the hobbit"}),
    ("endswith", "_", {"50% off_"}),
    ("endswith", "", set(TITLES)),
    ("iexact", "THE HOBBIT", {"The Hobbit", "the hobbit"}),
    ("iexact", "the", set()),
    ("iexact", "", {""}),
])
def test_text_lookups_match_as_python_would_on_ascii(
        books: list[Book], lookup: str, value: str, expected: set[str]) -> None:
    found = {b.title for b in Book.objects.filter(**{f"title__{lookup}": value})}
    assert found == expected
    excluded = {b.title for b in Book.objects.exclude(**{f"title__{lookup}": value})}
    assert excluded == set(TITLES) - expected


def test_a_none_value_never_matches_and_combines_with_an_index(books: list[Book]) -> None:
    assert {b.title for b in Book.objects.filter(note__icontains="hobbit")} == {
        "The Hobbit", "Hobbit Tales"}  # "the hobbit" has no note
    # the index on pages chooses the candidates; contains is checked over them only
    query = Book.objects.filter(pages__lte=1, title__contains="obbit")
    assert {b.title for b in query} == {"The Hobbit", "the hobbit"}
    assert query.explain()["examined at most"] == 2


def test_text_lookups_scan_without_another_condition(books: list[Book]) -> None:
    explained = Book.objects.filter(title__icontains="x").explain()
    assert explained["scans"] is True


@pytest.mark.parametrize(("lookup", "value"), [
    ("pages__contains", "1"), ("title__contains", 1), ("title__iexact", None),
    ("title__endswith", b"x"),
])
def test_text_lookups_refuse_other_fields_and_values(books: list[Book], lookup: str,
                                                     value: object) -> None:
    with pytest.raises(errors.InvalidQuery) as raised:
        Book.objects.filter(**{lookup: value})
    assert raised.value.model == "Book"
