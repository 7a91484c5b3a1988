"""``any_of``: a list of keys bound as one parameter (one SQL text for any length, index-served);
``sql_literals``: the engine's constants written into the SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from engine.storage.database import Database
from engine.storage.lists import any_of, sql_literals
from engine.storage.models import users
from tests.storage.test_inbox_plan import discourage_scans, explain

IDS = ["plain", "o'brien", 'quo"te', "back\\slash", "ünï-cødé", "comma,and space", "[bracket]"]
BY_IDS = select(users.c.id).where(any_of(users.c.id, "ids")).order_by(users.c.id)


async def add_users(db: Database) -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    async with db.transaction() as session:
        await session.execute(insert(users), [{"id": i, "name": i, "email": None, "created_at": now} for i in IDS])
        await session.execute(insert(users), [{"id": f"u{n}", "name": "x", "created_at": now} for n in range(30)])


async def test_finds_exactly_the_listed_keys_whatever_they_contain(db: Database) -> None:
    await add_users(db)
    async with db.read() as session:
        for wanted in ([], ["plain"], IDS, [*IDS, "plain", "missing", ""], [f"u{n}" for n in range(0, 30, 7)]):
            found = list((await session.scalars(BY_IDS, {"ids": wanted})).all())
            assert found == sorted(set(wanted) & ({*IDS} | {f"u{n}" for n in range(30)})), wanted


async def test_one_sql_text_for_lists_of_any_length_served_by_the_primary_key(db: Database) -> None:
    await add_users(db)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.startswith("SELECT"):  # not SQLite's explicit BEGIN
            sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            for length in (1, 5, 30):
                await session.scalars(BY_IDS, {"ids": [f"u{n}" for n in range(length)]})
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    assert len(sent) == 3 and len({statement for statement, _ in sent}) == 1, sent
    statement, parameters = sent[-1]
    async with db.read() as session:
        await discourage_scans(session, db)
        plan = await explain(session, db, statement, parameters)
    assert "pk_users" in plan or "sqlite_autoindex_users" in plan or "PRIMARY KEY" in plan, plan


def test_sql_literals_write_constants_and_refuse_anything_that_could_escape() -> None:
    statement = select(users.c.id).where(users.c.name.in_(sql_literals(["A", "B"])))
    assert "IN ('A', 'B')" in str(statement)
    for bad in ("it's", "back\\"):
        with pytest.raises(ValueError, match="not a constant"):
            sql_literals([bad])
