"""``load_all``: a resolver's keys loaded together, through the request's DataLoader cache."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from strawberry.dataloader import DataLoader

from schema.loaders import load_all


class Source:
    """A batch function that records the batches it is asked for."""

    def __init__(self, failing: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.failing = failing

    async def __call__(self, keys: Sequence[str]) -> list[str | BaseException]:
        self.batches.append(list(keys))
        return [LookupError(key) if key == self.failing else key.upper() for key in keys]


async def test_missing_keys_are_loaded_in_one_batch_once_each_and_cached_for_later_loads() -> None:
    source = Source()
    loader: DataLoader[str, str] = DataLoader(load_fn=source)
    assert await loader.load("a") == "A"  # loaded earlier in the request

    found = await load_all(loader, ["b", "a", "c", "b"])

    assert found == {"b": "B", "a": "A", "c": "C"}
    assert source.batches == [["a"], ["b", "c"]], "the cached key is not asked again; duplicates once"
    assert await loader.load("c") == "C" and await loader.load_many(["b"]) == ["B"]
    assert len(source.batches) == 2, "later loads in the request are answered from the cache"


async def test_nothing_missing_means_no_batch_and_no_keys_means_nothing() -> None:
    source = Source()
    loader: DataLoader[str, str] = DataLoader(load_fn=source)
    await loader.load("a")
    assert await load_all(loader, ["a"]) == {"a": "A"}
    assert await load_all(loader, []) == {}
    assert source.batches == [["a"]]


async def test_a_key_the_batch_function_fails_raises_as_load_would() -> None:
    loader: DataLoader[str, str] = DataLoader(load_fn=Source(failing="b"))
    with pytest.raises(LookupError, match="b"):
        await load_all(loader, ["a", "b"])
    with pytest.raises(LookupError, match="b"):
        await loader.load("b")
