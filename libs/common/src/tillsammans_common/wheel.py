"""Well-being wheels as versioned data (Barnets bästa-hjulet, GIRFEC's SHANARRI, local variants).

Definitions live in ``wheels/*.json`` so a municipality can add a variant without code. Each
area names the kinds of organisation its concerns usually call for.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

AREA_CODE_PATTERN = r"^[a-z][a-z_]{1,31}$"
AreaCode = Annotated[str, StringConstraints(pattern=AREA_CODE_PATTERN)]


class WheelArea(BaseModel):
    """One area of a wheel, with the organisations it points to."""

    model_config = ConfigDict(frozen=True)
    code: AreaCode
    label_sv: str
    label_en: str
    suggests: list[str]


class Wheel(BaseModel):
    """A versioned wheel definition."""

    model_config = ConfigDict(frozen=True)
    id: str
    version: int
    name: str
    source: str
    areas: list[WheelArea]

    def area_codes(self) -> set[str]:
        """The codes of all areas."""
        return {area.code for area in self.areas}

    def suggested_orgs(self, flagged: list[str], *, exclude: str | None = None) -> list[str]:
        """Organisations the flagged areas call for, in wheel order, without ``exclude``."""
        seen: list[str] = []
        for area in self.areas:
            if area.code in flagged:
                seen.extend(org for org in area.suggests if org not in seen and org != exclude)
        return seen


@cache
def wheels() -> dict[tuple[str, int], Wheel]:
    """Every shipped wheel, keyed by (id, version)."""
    found: dict[tuple[str, int], Wheel] = {}
    for entry in resources.files("tillsammans_common.wheels").iterdir():
        if entry.name.endswith(".json"):
            wheel = Wheel.model_validate(json.loads(entry.read_text(encoding="utf-8")))
            found[(wheel.id, wheel.version)] = wheel
    return found


def latest(wheel_id: str) -> Wheel | None:
    """The newest version of a wheel, or None if unknown."""
    versions = [w for (wid, _), w in wheels().items() if wid == wheel_id]
    return max(versions, key=lambda w: w.version) if versions else None


def all_area_codes() -> set[str]:
    """Area codes known in any shipped wheel."""
    return {code for wheel in wheels().values() for code in wheel.area_codes()}
