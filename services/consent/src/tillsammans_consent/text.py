"""The consent in plain Swedish, as the grantors agreed to it, generated from the record (to print and sign).

Pure: it reads a stored consent and names only what ``GET /consents/{id}`` already shows its reader.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tillsammans_consent.models import (
    ChildView,
    Consent,
    ConsentCategory,
    ConsentPurpose,
    Custody,
    Grantor,
    GrantorRole,
    LegalBasis,
)

CATEGORIES = {
    ConsentCategory.IDENTITY: "vem barnet är (namn och personnummer)",
    ConsentCategory.CONCERN: "den oro som har anmälts för barnet",
    ConsentCategory.MAPPING_SUMMARY: "en sammanfattning av kartläggningen av barnets situation",
    ConsentCategory.HEALTH: "uppgifter om barnets hälsa",
    ConsentCategory.SOCIAL_SERVICES: "uppgifter från socialtjänsten",
}
PURPOSES = {
    ConsentPurpose.COORDINATION_MEETING: "ett samverkansmöte om stöd till barnet",
    ConsentPurpose.SIP: "en samordnad individuell plan (SIP) för barnet",
    ConsentPurpose.FOLLOW_UP: "uppföljning av det stöd som planerats för barnet",
}
LEGAL_BASES = {
    LegalBasis.CONSENT: "samtycke (artikel 6.1 a)",
    LegalBasis.CONTRACT: "avtal (artikel 6.1 b)",
    LegalBasis.LEGAL_OBLIGATION: "rättslig förpliktelse (artikel 6.1 c)",
    LegalBasis.VITAL_INTERESTS: "grundläggande intressen (artikel 6.1 d)",
    LegalBasis.PUBLIC_TASK: "uppgift av allmänt intresse eller myndighetsutövning (artikel 6.1 e)",
    LegalBasis.LEGITIMATE_INTERESTS: "berättigat intresse (artikel 6.1 f)",
}
CUSTODY = {
    Custody.JOINT: "gemensam vårdnad",
    Custody.SOLE: "ensam vårdnad",
    Custody.OTHER: "annan vårdnadsform",
}


def _swedish_time() -> tzinfo:
    try:
        return ZoneInfo("Europe/Stockholm")
    except ZoneInfoNotFoundError:
        return UTC


SWEDISH_TIME = _swedish_time()


def _day(value: datetime) -> str:
    # Stored in UTC (SQLite returns it naive); the grantors read Swedish calendar time.
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"{aware.astimezone(SWEDISH_TIME):%Y-%m-%d %H:%M}"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} och {items[-1]}"


def _child_view(view: ChildView | None) -> str:
    if view is None:
        return "Barnets åsikt: inte antecknad."
    if not view.heard:
        return f"Barnets åsikt: barnet har inte tillfrågats. {view.note or ''}".rstrip()
    answer = {True: "barnet är positivt", False: "barnet är negativt", None: "barnet har inte tagit ställning"}
    note = f" {view.note}" if view.note else ""
    return f"Barnets åsikt: barnet har tillfrågats; {answer[view.agrees]}.{note}"


def consent_text(consent: Consent) -> str:
    """The consent's terms in plain Swedish: the parties, the information, the purpose, the period, who agreed."""
    grantors = [Grantor.model_validate(grantor) for grantor in consent.grantors]
    roles = {GrantorRole.GUARDIAN: "vårdnadshavare", GrantorRole.CHILD: "barnet självt"}
    lines = [
        "SAMTYCKE TILL UTLÄMNANDE AV UPPGIFTER",
        "",
        f"Samtycke {consent.id}, version {consent.revision}"
        + (f" (ändrar samtycke {consent.amends})" if consent.amends else ""),
        f"Barnet: personnummer {consent.child_personnummer}. Vårdnad: {CUSTODY[consent.custody]}.",
        "",
        f"Jag/vi samtycker till att {consent.disclosing_org} lämnar ut följande uppgifter om barnet "
        f"till {_listing(list(consent.receiving_orgs))}:",
        *[f"  - {CATEGORIES[ConsentCategory(category)]}" for category in consent.categories],
        "",
        f"Syfte: {PURPOSES[consent.purpose]}. Uppgifterna får inte användas för något annat syfte.",
        f"Giltigt från {_day(consent.valid_from)} till {_day(consent.valid_until)} (svensk tid).",
        "",
        "Samtycket kan när som helst återkallas, helt eller delvis, hos den som lämnar ut uppgifterna.",
        "Samtycket häver sekretessen för just dessa uppgifter (offentlighets- och sekretesslagen 12 kap. 2 §).",
        f"Rättslig grund för behandlingen av personuppgifter (dataskyddsförordningen): "
        f"{LEGAL_BASES[LegalBasis(consent.legal_basis)]}"
        + (f"; {consent.legal_basis_note}" if consent.legal_basis_note else "") + ".",
        "",
        _child_view(ChildView.model_validate(consent.child_view) if consent.child_view is not None else None),
        "",
        "Samtycket har lämnats av:",
        *[f"  - {grantor.name}, {roles[grantor.role]}, {_day(grantor.given_at)}" for grantor in grantors],
        "",
        "Underskrift: ______________________________  Datum: ____________",
    ]
    return "\n".join(lines) + "\n"
