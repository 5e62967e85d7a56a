"""The IVR's residents directory in memory follows the table: the CSV import, an
operator's SQL, and changes made while its LISTEN connection was down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from callcenter import residents
from callcenter.residents import VipDirectory
from callcenter.service import follow_directory
from tests.conftest import drop_connections
from tests.db.test_agent_requests import until


@pytest.fixture
async def directory(db_dsn: str, db_pool: asyncpg.Pool) -> AsyncIterator[VipDirectory]:
    rows, problems = residents.parse_csv("phone,name,vip\n13900000001,李爷爷,老人\n")
    assert not problems
    await residents.upsert(db_pool, rows, by="test")
    directory, stopping = VipDirectory(), asyncio.Event()
    following = await follow_directory(db_pool, db_dsn, directory, stopping)
    try:
        yield directory
    finally:
        stopping.set()
        await asyncio.wait_for(following, 10)


async def _vip(directory: VipDirectory, number: str) -> str:
    return (await directory.lookup(number)).vip


async def test_loaded_at_start_and_numbers_are_compared_without_the_country_prefix(
    directory: VipDirectory,
) -> None:
    assert directory.snapshot() == {"connected": True, "numbers": 1}
    found = await directory.lookup("+86 139-0000-0001")
    assert (found.known, found.vip) == (True, "elderly")
    unknown = await directory.lookup("13600000000")
    assert (unknown.known, unknown.vip) == (False, "none")
    assert not (await directory.lookup("")).known


async def test_an_import_and_an_operators_sql_reach_the_ivr_by_notify(
    directory: VipDirectory, db_pool: asyncpg.Pool
) -> None:
    rows, _ = residents.parse_csv("phone,vip\n13900000002,残障\n13900000001,否\n")
    await residents.upsert(db_pool, rows, by="test")
    await until("the import", lambda: _is(directory, "13900000002", "disabled"))
    assert await _vip(directory, "13900000001") == "none"  # updated, still known

    await db_pool.execute("DELETE FROM residents WHERE phone = '13900000002'")
    await until("the delete", lambda: _known_count(directory, 1))
    assert not (await directory.lookup("13900000002")).known


async def test_changes_made_while_not_listening_are_loaded_on_reconnect(
    directory: VipDirectory, db_pool: asyncpg.Pool, db_dsn: str, pg_server_dsn: str
) -> None:
    await drop_connections(db_pool, pg_server_dsn)  # the LISTEN connection too
    # A connection of its own: the pool's were just killed under it.
    operator = await asyncpg.connect(db_dsn)
    try:
        await operator.execute("INSERT INTO residents (phone, vip, updated_by)"
                               " VALUES ('13900000003', 'elderly', 'operator')")
    finally:
        await operator.close()
    await until("the reload", lambda: _is(directory, "13900000003", "elderly"))


async def _is(directory: VipDirectory, number: str, vip: str) -> bool:
    return await _vip(directory, number) == vip


async def _known_count(directory: VipDirectory, count: int) -> bool:
    return len(directory) == count


async def test_the_named_buildings_are_those_an_address_may_name(db_pool: asyncpg.Pool) -> None:
    rows, problems = residents.parse_csv(
        "phone,name,building,unit,room\n13900000021,甲,紫荆苑,1,101\n"
        "13900000022,乙,12,2,202\n13900000023,丙,商业街,,\n13900000024,丁,紫荆苑,2,301\n")
    assert not problems
    await residents.upsert(db_pool, rows, by="test")
    names = await residents.building_names(db_pool)
    assert {"紫荆苑", "商业街"} <= set(names) and "12" not in names and "" not in names
    assert len(names) == len(set(names))
