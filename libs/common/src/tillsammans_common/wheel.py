"""Well-being wheels as versioned data (Barnets bästa-hjulet, GIRFEC's SHANARRI, local variants).

Definitions live in ``wheels/*.json`` of this package and, for a municipality's own variants, in a
configured folder (``TILLSAMMANS_WHEELS_DIR``), so a variant is added without code. Each wheel has
its own scale and area texts; each area names the kinds of organisation its concerns usually call
for and the roles there (school nurse, BUP, family therapist) to invite, from the roles files
(``*.roles.json``, decision 24). Files named ``*.correspondence.json`` declare which areas of two
wheels examine the same thing (decision 21).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from tillsammans_common.settings import OrgKind

AREA_CODE_PATTERN = r"^[a-z][a-z_]{1,31}$"
AreaCode = Annotated[str, StringConstraints(pattern=AREA_CODE_PATTERN)]
WHEEL_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
LEVEL_CODE_PATTERN = r"^[a-z0-9][a-z0-9_]{0,31}$"
LevelCode = Annotated[str, StringConstraints(pattern=LEVEL_CODE_PATTERN)]
UNKNOWN_LEVEL = "unknown"
"""Accepted on every wheel: the area was talked about but nobody can say yet; it has no place on the scale."""
CORRESPONDENCE_SUFFIX = ".correspondence.json"
ROLES_SUFFIX = ".roles.json"
ROLE_CODE_PATTERN = r"^[a-z][a-z0-9_]{1,31}$"
RoleCode = Annotated[str, StringConstraints(pattern=ROLE_CODE_PATTERN)]
LEGACY_KINDS = {"school": OrgKind.EDUCATION, "region": OrgKind.HEALTH_CARE, "social": OrgKind.SOCIAL_SERVICES}
"""What the first wheels' ``suggests`` strings (the development organisations' ids) meant: a kind of organisation."""


class WheelError(ValueError):
    """A wheel or correspondence file that cannot be used; raised at start-up, naming the file."""


class ScaleStep(BaseModel):
    """One step of a wheel's scale: its code (what a client sends), its place, its texts, and whether it flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    code: LevelCode
    value: int
    label_sv: str = Field(min_length=1)
    label_en: str = Field(min_length=1)
    flags: bool = Field(description="An assessment at this step flags the area, so its organisations are suggested.")


class WheelScale(BaseModel):
    """The steps an area is assessed on, in increasing value."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    steps: list[ScaleStep] = Field(min_length=2)

    @model_validator(mode="after")
    def _ordered_and_unique(self) -> WheelScale:
        values = [step.value for step in self.steps]
        if values != sorted(set(values)):
            raise ValueError("scale step values must be unique and increasing")
        codes = [step.code for step in self.steps]
        if len(set(codes)) != len(codes) or UNKNOWN_LEVEL in codes:
            raise ValueError(f"scale step codes must be unique and not {UNKNOWN_LEVEL!r}")
        if not any(step.flags for step in self.steps):
            raise ValueError("at least one scale step must flag an area")
        return self

    def step(self, code: str) -> ScaleStep | None:
        """The step with this code, or None (also for ``unknown``)."""
        return next((step for step in self.steps if step.code == code), None)

    def codes(self) -> list[str]:
        """Every level a client may send on this scale, ``unknown`` last."""
        return [step.code for step in self.steps] + [UNKNOWN_LEVEL]


CONCERN_SCALE = WheelScale(steps=[
    ScaleStep(code="no_concern", value=1, label_sv="Ingen oro", label_en="No concern", flags=False),
    ScaleStep(code="some_concern", value=2, label_sv="Viss oro", label_en="Some concern", flags=True),
    ScaleStep(code="serious_concern", value=3, label_sv="Allvarlig oro", label_en="Serious concern", flags=True),
])
"""The scale of the first wheels (no, some, serious concern); a wheel that states no scale uses it."""


class Role(BaseModel):
    """A role at a kind of organisation that a flagged area may call for (e.g. skolsköterska, BUP)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    code: RoleCode
    kind: OrgKind
    label_sv: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


class RoleCatalogue(BaseModel):
    """A ``*.roles.json`` file: the roles wheels may name, with their texts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str
    roles: list[Role] = Field(min_length=1)


class AreaSuggestion(BaseModel):
    """A kind of organisation an area calls for, and the roles there to invite."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: OrgKind
    roles: list[RoleCode] = Field(default_factory=list)


class WheelArea(BaseModel):
    """One area of a wheel, with the kinds of organisation (and roles) it points to."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    code: AreaCode
    label_sv: str
    label_en: str
    suggests: list[AreaSuggestion]
    description_sv: str | None = None
    description_en: str | None = None

    @field_validator("suggests", mode="before")
    @classmethod
    def _legacy_org_ids(cls, value: object) -> object:
        # Wheels already deployed name the development organisations ("region"); each meant a kind.
        if not isinstance(value, list):
            return value
        read: list[object] = []
        for item in value:
            if isinstance(item, str):
                if item not in LEGACY_KINDS:
                    raise ValueError(f"{item!r} is neither a kind with roles nor one of {', '.join(LEGACY_KINDS)}")
                read.append({"kind": LEGACY_KINDS[item].value, "roles": []})
            else:
                read.append(item)
        return read

    @model_validator(mode="after")
    def _one_entry_per_kind(self) -> WheelArea:
        kinds = [suggestion.kind for suggestion in self.suggests]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"area {self.code}: each kind of organisation is suggested once")
        return self


class Wheel(BaseModel):
    """A versioned wheel definition."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: Annotated[str, StringConstraints(pattern=WHEEL_ID_PATTERN)]
    version: int = Field(ge=1)
    name: str
    source: str
    scale: WheelScale = CONCERN_SCALE
    areas: list[WheelArea] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_areas(self) -> Wheel:
        codes = [area.code for area in self.areas]
        if len(set(codes)) != len(codes):
            raise ValueError("area codes must be unique within a wheel")
        return self

    def area_codes(self) -> set[str]:
        """The codes of all areas."""
        return {area.code for area in self.areas}

    def area(self, code: str) -> WheelArea | None:
        """The area with this code, or None."""
        return next((area for area in self.areas if area.code == code), None)

    def suggested_kinds(self, flagged: list[str]) -> list[tuple[OrgKind, list[str], list[str]]]:
        """The kinds the flagged areas call for, in wheel order: (kind, roles, areas), each role and area once."""
        found: dict[OrgKind, tuple[list[str], list[str]]] = {}
        for area in self.areas:
            if area.code not in flagged:
                continue
            for suggestion in area.suggests:
                roles, areas = found.setdefault(suggestion.kind, ([], []))
                roles.extend(role for role in suggestion.roles if role not in roles)
                areas.append(area.code)
        return [(kind, roles, areas) for kind, (roles, areas) in found.items()]


class Correspondence(BaseModel):
    """A declared correspondence: which areas of two wheels examine the same dimension of a child's life."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1, max_length=64)
    source: str
    wheels: tuple[str, str]
    links: list[tuple[AreaCode, AreaCode]] = Field(
        min_length=1, description="Pairs (area of the first wheel, area of the second); an area may have several.")

    def targets(self, from_wheel: str, area_code: str) -> list[str]:
        """The areas of the other wheel that ``area_code`` of ``from_wheel`` corresponds to."""
        if from_wheel == self.wheels[0]:
            return [b for a, b in self.links if a == area_code]
        return [a for a, b in self.links if b == area_code]


@dataclass(frozen=True)
class Registry:
    """Every installed wheel version and correspondence."""

    wheels: dict[tuple[str, int], Wheel]
    correspondences: list[Correspondence]
    roles: dict[str, Role]


PACKAGED: Traversable = resources.files("tillsammans_common.wheels")
_registry: Registry | None = None


def load(folders: Iterable[Traversable | Path]) -> Registry:
    """Read and check every wheel and correspondence in ``folders``; WheelError names a bad file."""
    found: dict[tuple[str, int], Wheel] = {}
    origin: dict[tuple[str, int], str] = {}
    correspondences: list[tuple[str, Correspondence]] = []
    roles: dict[str, Role] = {}
    for folder in folders:
        if not folder.is_dir():
            raise WheelError(f"wheels folder {folder} does not exist or is not a folder")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".json"):
                continue
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
                if entry.name.endswith(CORRESPONDENCE_SUFFIX):
                    correspondences.append((str(entry), Correspondence.model_validate(data)))
                    continue
                if entry.name.endswith(ROLES_SUFFIX):
                    _add_roles(str(entry), RoleCatalogue.model_validate(data), roles)
                    continue
                wheel = Wheel.model_validate(data)
            except (ValueError, ValidationError) as error:  # JSONDecodeError is a ValueError
                raise WheelError(f"wheel file {entry}: {error}") from error
            key = (wheel.id, wheel.version)
            if key in found:
                # Two files claiming one version would make old mappings read differently by load order.
                raise WheelError(f"wheel file {entry}: {wheel.id} v{wheel.version} is already defined in {origin[key]}")
            found[key], origin[key] = wheel, str(entry)
    for key, wheel in found.items():
        _check_roles(origin[key], wheel, roles)
    for path, correspondence in correspondences:
        _check_correspondence(path, correspondence, found)
    return Registry(wheels=found, correspondences=[correspondence for _, correspondence in correspondences],
                    roles=roles)


def _add_roles(path: str, catalogue: RoleCatalogue, roles: dict[str, Role]) -> None:
    # A municipality may add roles, never redefine one: a code must mean the same in every wheel.
    for role in catalogue.roles:
        if role.code in roles and roles[role.code] != role:
            raise WheelError(f"roles file {path}: role {role.code} is already defined differently")
        roles[role.code] = role


def _check_roles(path: str, wheel: Wheel, roles: dict[str, Role]) -> None:
    # An undeclared role would reach users as a bare code; one of another kind would be suggested at the wrong place.
    for area in wheel.areas:
        for suggestion in area.suggests:
            for code in suggestion.roles:
                role = roles.get(code)
                if role is None:
                    raise WheelError(f"wheel file {path}: area {area.code} names role {code!r}, which no roles "
                                     "file declares")
                if role.kind is not suggestion.kind:
                    raise WheelError(f"wheel file {path}: area {area.code} names role {code!r} under "
                                     f"{suggestion.kind.value}, but it is a role of {role.kind.value}")


def _check_correspondence(path: str, correspondence: Correspondence, found: dict[tuple[str, int], Wheel]) -> None:
    # A link to an area no version of the wheel has is a typo that would silently drop an area when read across.
    for side, wheel_id in enumerate(correspondence.wheels):
        codes = {code for (wid, _), wheel in found.items() if wid == wheel_id for code in wheel.area_codes()}
        if not codes:
            raise WheelError(f"correspondence file {path}: no wheel {wheel_id!r} is installed")
        unknown = sorted({link[side] for link in correspondence.links} - codes)
        if unknown:
            raise WheelError(f"correspondence file {path}: {', '.join(unknown)} are not areas of {wheel_id}")


def configure(folder: Path | None) -> Registry:
    """Install the packaged wheels plus those in ``folder`` (a municipality's own); WheelError if any is bad."""
    global _registry
    _registry = load([PACKAGED] if folder is None else [PACKAGED, folder])
    return _registry


def registry() -> Registry:
    """The installed wheels: as configured at start-up, else the packaged ones."""
    return _registry if _registry is not None else configure(None)


def wheels() -> dict[tuple[str, int], Wheel]:
    """Every installed wheel, keyed by (id, version)."""
    return registry().wheels


def latest(wheel_id: str) -> Wheel | None:
    """The newest version of a wheel, or None if unknown."""
    versions = [w for (wid, _), w in wheels().items() if wid == wheel_id]
    return max(versions, key=lambda w: w.version) if versions else None


def all_area_codes() -> set[str]:
    """Area codes known in any installed wheel."""
    return {code for wheel in wheels().values() for code in wheel.area_codes()}


def roles() -> dict[str, Role]:
    """Every declared role, by code."""
    return registry().roles


def correspondence(from_wheel: str, to_wheel: str) -> Correspondence | None:
    """The declared correspondence between two wheels (either direction), or None."""
    return next((c for c in registry().correspondences if set(c.wheels) == {from_wheel, to_wheel}), None)
