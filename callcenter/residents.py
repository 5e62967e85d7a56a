"""The residents directory: a caller's name, address and VIP kind by phone number.

``parse_csv`` is pure (the import file's rows, or the reasons it is refused);
the rest is the SQL, and the copy in memory the IVR looks a caller up in
(a VIP caller is offered a person first and raised one priority level).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from callcenter.ivr.engine import CallerIdentified

VIP_KINDS = ("none", "elderly", "disabled")
COLUMNS = ("phone", "name", "building", "unit", "room", "vip", "notes")
_VIP_WORDS = {"": "none", "none": "none", "否": "none", "elderly": "elderly", "独居老人": "elderly",
              "老人": "elderly", "disabled": "disabled", "残障": "disabled", "残疾": "disabled"}


@dataclass(frozen=True)
class Resident:
    phone: str
    name: str = ""
    building: str = ""
    unit: str = ""
    room: str = ""
    vip: str = "none"
    notes: str = ""


def normalise_phone(text: str) -> str:
    """Digits only, without a +86/0086 country prefix: how caller ids are compared."""
    digits = re.sub(r"\D", "", text or "")
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


def parse_csv(text: str) -> tuple[list[Resident], list[str]]:
    """Rows of a UTF-8 CSV with a header naming at least ``phone``; unknown columns
    are refused, bad rows are reported by line and left out."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "phone" not in header:
        return [], ["the header must name a 'phone' column"]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        return [], [f"unknown columns: {', '.join(unknown)} (known: {', '.join(COLUMNS)})"]
    rows, problems, seen = [], [], set()
    for line, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        phone = normalise_phone(row.get("phone", ""))
        vip = _VIP_WORDS.get(row.get("vip", "").lower())
        if not 5 <= len(phone) <= 20:
            problems.append(f"line {line}: not a phone number: {row.get('phone', '')!r}")
        elif vip is None:
            problems.append(f"line {line}: vip must be one of {', '.join(VIP_KINDS)}")
        elif phone in seen:
            problems.append(f"line {line}: {phone} appears twice")
        else:
            seen.add(phone)
            rows.append(Resident(phone, row.get("name", ""), row.get("building", ""),
                                 row.get("unit", ""), row.get("room", ""), vip,
                                 row.get("notes", "")))
    return rows, problems


async def upsert(pool: asyncpg.Pool, residents: list[Resident], *, by: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO residents (phone, name, building, unit, room, vip, notes, updated_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (phone) DO UPDATE SET"
            " name = EXCLUDED.name, building = EXCLUDED.building, unit = EXCLUDED.unit,"
            " room = EXCLUDED.room, vip = EXCLUDED.vip, notes = EXCLUDED.notes,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()",
            [(r.phone, r.name, r.building, r.unit, r.room, r.vip, r.notes, by)
             for r in residents])
    return len(residents)


async def find(pool: asyncpg.Pool, phone: str) -> dict[str, Any] | None:
    number = normalise_phone(phone)
    if not number:
        return None
    row = await pool.fetchrow("SELECT phone, name, building, unit, room, vip, notes"
                              " FROM residents WHERE phone = $1", number)
    return asdict(Resident(**dict(row))) if row else None


async def building_names(pool: asyncpg.Pool) -> tuple[str, ...]:
    """The directory's buildings that are named, not numbered (紫荆苑, A座): the
    words an address in a call may use for them."""
    rows = await pool.fetch("SELECT DISTINCT building FROM residents"
                            " WHERE building <> '' AND building !~ '^[0-9]+$' ORDER BY 1")
    return tuple(str(r["building"]) for r in rows)


RESIDENTS_CHANNEL = "cc_residents"  # announced by a trigger on every change (0014)


class VipDirectory:
    """The IVR's copy of the directory in memory: number → VIP kind.

    A caller is looked up at every call's start, before the first prompt; a
    query there put the database on every call's path (p99 per AGI command went
    from 12 ms to 74-430 ms with 1,000 callers). The copy is loaded at start and
    again on each ``cc_residents`` notification (and on every LISTEN reconnect,
    for changes made while it was not listening), so a lookup is a dict read.
    Until the first load succeeds, every caller is unknown: the IVR goes on.
    """

    def __init__(self) -> None:
        self._vip: dict[str, str] = {}
        self.loaded = False

    async def reload(self, pool: asyncpg.Pool) -> None:
        rows = await pool.fetch("SELECT phone, vip FROM residents")
        self._vip = {row["phone"]: row["vip"] for row in rows}  # one swap: never half-read
        self.loaded = True

    def __len__(self) -> int:
        return len(self._vip)

    def snapshot(self) -> dict[str, Any]:
        """For the health page (``/healthz``'s ``live``): loaded, and how many."""
        return {"connected": self.loaded, "numbers": len(self._vip)}

    async def lookup(self, number: str) -> CallerIdentified:
        vip = self._vip.get(normalise_phone(number))
        return CallerIdentified(known=vip is not None, vip=vip or "none")
