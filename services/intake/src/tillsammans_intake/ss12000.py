"""The subset of an SS 12000 export the directory is kept from, and how it maps to units (decision 20).

SS 12000 is the Swedish standard for school data. Intake reads three of its collections:
organisations (the school units, with their school types and municipality), duties (who works
where, in which duty role) and persons (only those a duty names, for their login id). Placements
and every person a duty does not name are not read: a child's placement stays in the school's own
systems, and the directory needs no child. Records keep the standard's field names; fields intake
does not read are ignored, not refused, as every real export carries many (addresses, phone
numbers, group memberships), and none of them is stored.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tillsammans_common.errors import InvalidField
from tillsammans_intake.models import MAX_AGE, MUNICIPALITY_CODE, UnitKind

Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
SCHOOL_UNIT = "Skolenhet"
_UNIT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

SCHOOL_TYPES: dict[str, tuple[UnitKind, range]] = {
    "FS": (UnitKind.PRESCHOOL, range(1, 6)),
    "FKLASS": (UnitKind.SCHOOL, range(6, 7)),
    "GR": (UnitKind.SCHOOL, range(7, 16)),
    "GRS": (UnitKind.SCHOOL, range(7, 16)),
    "GY": (UnitKind.UPPER_SECONDARY, range(16, 20)),
    "GYS": (UnitKind.UPPER_SECONDARY, range(16, 20)),
}
"""SS 12000 school types that hold a BBA, with the unit kind and ages each stands for; others are not read."""
# A unit with school types of several kinds is the oldest children's: an F-9 school with a
# preschool class is a school, an upper secondary school with an introduction year still one.
_KIND_ORDER = (UnitKind.UPPER_SECONDARY, UnitKind.SCHOOL, UnitKind.PRESCHOOL)


class Reference(BaseModel):
    """A reference to another record of the export, by its id."""

    model_config = ConfigDict(extra="ignore")
    id: Text


class Organisation(BaseModel):
    """An SS 12000 organisation; only school units (organisationType Skolenhet) become directory units."""

    model_config = ConfigDict(extra="ignore")
    id: Text
    displayName: Text  # noqa: N815 (the standard's name)
    organisationType: Text  # noqa: N815
    organisationCode: Text | None = None  # noqa: N815
    municipalityCode: str | None = Field(None, pattern=MUNICIPALITY_CODE)  # noqa: N815
    schoolTypes: list[Annotated[str, StringConstraints(max_length=16)]] = Field(  # noqa: N815
        default_factory=list, max_length=32)


class Person(BaseModel):
    """A member of staff that a duty names; the login id is the first eduPersonPrincipalName."""

    model_config = ConfigDict(extra="ignore")
    id: Text
    givenName: Text  # noqa: N815
    familyName: Text  # noqa: N815
    eduPersonPrincipalNames: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(  # noqa: N815
        default_factory=list, max_length=8)


class Duty(BaseModel):
    """A person's duty at an organisation, in a duty role (e.g. Rektor), for a period."""

    model_config = ConfigDict(extra="ignore")
    id: Text
    person: Reference
    dutyAt: Reference  # noqa: N815
    dutyRole: Text  # noqa: N815
    startDate: date | None = None  # noqa: N815
    endDate: date | None = None  # noqa: N815


class SS12000Export(BaseModel):
    """An SS 12000-shaped export: the collections intake reads, all-or-nothing."""

    model_config = ConfigDict(extra="forbid")
    organisations: list[Organisation] = Field(max_length=5000)
    persons: list[Person] = Field(default_factory=list, max_length=50000)
    duties: list[Duty] = Field(default_factory=list, max_length=50000)
    placements: list[dict[str, Any]] = Field(
        default_factory=list, max_length=0,
        description="Not read: a child's placement stays in the school's systems. Leave it out of the export.")


def units_from(export: SS12000Export, *, bba_roles: list[str], deputy_roles: list[str],
               today: date) -> list[dict[str, Any]]:
    """The directory units an export describes, as ``Unit`` fields; 422 naming the first field that breaks a rule."""
    persons = {person.id: (index, person) for index, person in enumerate(export.persons)}
    units: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, organisation in enumerate(export.organisations):
        if organisation.organisationType != SCHOOL_UNIT:
            continue
        served = [SCHOOL_TYPES[code] for code in organisation.schoolTypes if code in SCHOOL_TYPES]
        if not served:
            continue
        unit_id = (organisation.organisationCode or organisation.id).lower()
        field = f"organisations.{index}." + ("organisationCode" if organisation.organisationCode else "id")
        if not _UNIT_ID.fullmatch(unit_id):
            raise InvalidField(field, "must be usable as a unit id: lowercase letters, digits, '.', '_', '-'")
        if unit_id in seen:
            raise InvalidField(field, "two school units of the export have the same unit id")
        seen.add(unit_id)
        kind = next(kind for kind in _KIND_ORDER if any(k == kind for k, _ in served))
        ages = [age for k, span in served if k == kind for age in span]
        active = [(position, duty) for position, duty in enumerate(export.duties)
                  if duty.dutyAt.id == organisation.id and (duty.startDate is None or duty.startDate <= today)
                  and (duty.endDate is None or today <= duty.endDate)]
        bbas = [(position, duty) for position, duty in active if duty.dutyRole in bba_roles]
        if not bbas:
            raise InvalidField("duties", f"school unit {unit_id} has no current duty in a BBA role "
                                         f"({', '.join(bba_roles)}): every unit needs its BBA")
        people = [_person(persons, position, duty) for position, duty in bbas] + [
            _person(persons, position, duty) for position, duty in active if duty.dutyRole in deputy_roles]
        bba = people[0]
        units.append({
            "id": unit_id, "name": organisation.displayName, "kind": kind,
            "municipality_code": organisation.municipalityCode, "min_age": min(ages),
            "max_age": min(max(ages), MAX_AGE), "bba_user": bba.eduPersonPrincipalNames[0],
            "bba_name": f"{bba.givenName} {bba.familyName}"[:200],
            "deputies": list(dict.fromkeys(p.eduPersonPrincipalNames[0] for p in people[1:]
                                           if p.eduPersonPrincipalNames[0] != bba.eduPersonPrincipalNames[0])),
        })
    return units


def _person(persons: dict[str, tuple[int, Person]], position: int, duty: Duty) -> Person:
    found = persons.get(duty.person.id)
    if found is None:
        raise InvalidField(f"duties.{position}.person", "names no person of the export")
    index, person = found
    if not person.eduPersonPrincipalNames:
        raise InvalidField(f"persons.{index}.eduPersonPrincipalNames", "a BBA or deputy needs a login id")
    return person
