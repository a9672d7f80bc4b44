"""How the edges (API routes, dashboard pages, the CLI) run a core use case: as one unit of work through
the store's group-commit writer, or as one read. Named here so that api/ and dashboard/ depend on core
only; `store.db.Database` is the implementation `create_app` wires in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from cartback.store.db import Tx

__all__ = ["Transactions", "Tx"]

T = TypeVar("T")
X = TypeVar("X")


class Transactions(Protocol):
    async def write(self, fn: Callable[[Tx], T], *, notify: bool = True) -> T:
        """Run `fn` in the next group commit; its result once it is durable."""
        ...

    async def write_each(self, many: Callable[[Tx, list[X]], list[T]], item: X, *, notify: bool = True) -> T:
        """`many(tx, [item])[0]` in the next group commit, with the items of that commit's other
        `write_each(many, ...)` in the same call of `many`; the result once it is durable."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T: ...

    def read_sync(self, fn: Callable[[Tx], T]) -> T: ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T: ...
