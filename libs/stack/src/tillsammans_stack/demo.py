"""The journey of seed 001, run against a running stack through the HTTP APIs.

A year-7 pupil's attendance has changed. The mentor, who does not know which unit holds the child's
BBA, raises a concern naming the child's stage and home municipality; intake routes it by the rules
of decision 20 to the school's BBA, who maps the
child on the Sörmland wheel; a meeting without consent is refused and an anonymous consultation
goes instead; the guardians consent; the samverkansmöte is called with region and social
services; coordinator, plan and follow-up are recorded; finally the guardians withdraw consent.
Every step prints the trace id ops would search for.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tillsammans_stack.signin import user_token

CHILD = {"personnummer": "20130412-1237", "name": "Alva Exempelsson"}
Printer = Callable[[str], None]


class FederationClient:
    """Calls any organisation's services as a named user, printing each step and its trace id."""

    def __init__(self, urls: dict[str, dict[str, str]], issuers: dict[str, dict[str, str]], *,
                 out: Printer = print) -> None:
        self.urls = urls
        self.issuers = issuers
        self.out = out
        self.http = httpx.Client(timeout=10.0)
        self._tokens: dict[tuple[str, str, str], str] = {}

    @classmethod
    def from_stack_file(cls, path: Path, **kwargs: Any) -> FederationClient:
        """Read the URLs and OpenID providers written by ``tillsammans up``."""
        stack = json.loads(path.read_text(encoding="utf-8"))
        return cls(stack["orgs"], stack["issuers"], **kwargs)

    def token(self, org: str, *, role: str, user: str) -> str:
        """The access token of ``user`` with ``role``, signed in once at ``org``'s OpenID provider."""
        key = (org, role, user)
        if key not in self._tokens:
            provider = self.issuers[org]
            self._tokens[key] = user_token(provider["issuer"], client_id=provider["audience"], user=user,
                                           roles=[role])
        return self._tokens[key]

    def call(self, org: str, service: str, method: str, path: str, *, role: str, user: str,
             body: Any = None, idempotency_key: str | None = None, step: str | None = None) -> httpx.Response:
        """One HTTP call as ``user`` of ``org``, signed in at its OpenID provider."""
        headers = {"Authorization": f"Bearer {self.token(org, role=role, user=user)}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self.http.request(method, self.urls[org][service] + path, json=body, headers=headers)
        if step:
            self.out(f"[{org:>6} {service:<8}] {method:<4} {path:<44} -> {response.status_code}  "
                     f"trace {response.headers.get('X-Trace-Id', '-')}  {step}")
        return response

    def until(self, what: str, probe: Callable[[], Any], *, timeout: float = 15.0) -> Any:
        """Poll ``probe`` until it returns something truthy (messages travel asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = probe()
            if result:
                return result
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class JourneyResult:
    """What the journey created, for tests to check."""

    concern: dict[str, Any] = field(default_factory=dict)
    mapping: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, Any] = field(default_factory=dict)
    consultation: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, Any] = field(default_factory=dict)
    meeting: dict[str, Any] = field(default_factory=dict)
    meeting_trace_id: str = ""
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    coordinator: dict[str, Any] = field(default_factory=dict)
    plan_items: list[dict[str, Any]] = field(default_factory=list)
    follow_up: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    received_report: dict[str, Any] = field(default_factory=dict)
    consultation_answers: list[dict[str, Any]] = field(default_factory=list)
    sip_consent: dict[str, Any] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    calendar: bytes = b""
    received_calendar: bytes = b""
    sip_meeting: dict[str, Any] = field(default_factory=dict)
    sip_items: list[dict[str, Any]] = field(default_factory=list)
    received_plan: dict[str, Any] = field(default_factory=dict)
    sip_plan: dict[str, Any] = field(default_factory=dict)
    sip_follow_up: dict[str, Any] = field(default_factory=dict)
    overdue: dict[str, Any] = field(default_factory=dict)
    withdrawn: dict[str, Any] = field(default_factory=dict)
    refused_after_withdrawal: dict[str, Any] = field(default_factory=dict)
    receipts: list[dict[str, Any]] = field(default_factory=list)


def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in (expected or (200, 201)):
        raise RuntimeError(f"unexpected {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    return body


def _receiving_bba(org: str) -> dict[str, str]:
    """Who reads invitations in a receiving organisation: its coordinator (need to know, decided by the policy)."""
    return {"role": "coordinator",
            "user": {"region": "samordnare.bvc", "social": "samordnare.ifo"}.get(org, "samordnare")}


def _received_invitation(fed: FederationClient, org: str, meeting_id: str) -> dict[str, Any] | None:
    """The invitation to ``meeting_id`` as ``org`` lists it, once it has arrived."""
    listed = fed.call(org, "meetings", "GET", "/received-invitations", **_receiving_bba(org)).json()
    return next((item for item in listed if item["meeting_id"] == meeting_id), None)


def _once_the_case_is_known(send: Callable[[], httpx.Response],
                            fields: tuple[str, ...] = ("case_id",)) -> Callable[[], httpx.Response | None]:
    """A probe for ``until``: the response, or None while the service has not yet learned the case (or the
    mapping, with ``fields``) from the event that tells it."""

    def probe() -> httpx.Response | None:
        response = send()
        unknown = response.status_code == 422 and any(
            error.get("field") in fields for error in response.json().get("errors", []))
        return None if unknown else response

    return probe


def _saved(out_dir: Path | None, name: str, body: bytes, out: Printer) -> Path | None:
    """Write ``body`` to ``out_dir/name`` (for the family or a calendar), when the demo keeps files."""
    if out_dir is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_bytes(body)
    out(f"   saved {path}")
    return path


def _has_status(fed: FederationClient, org: str, path: str, caller: dict[str, str], status: str) -> bool:
    """Whether the resource at ``path`` in ``org``'s meetings has reached ``status``."""
    return bool(fed.call(org, "meetings", "GET", path, **caller).json().get("status") == status)


def _all_purged(fed: FederationClient, consent_path: str, bba: dict[str, str]) -> list[dict[str, Any]] | None:
    """The consent's receivers once every one has confirmed the withdrawal, else None."""
    receivers: list[dict[str, Any]] = fed.call("school", "consent", "GET", consent_path, **bba).json()["receivers"]
    return receivers if all(receiver["state"] == "purged" for receiver in receivers) else None


def run_journey(fed: FederationClient, *, withdraw: bool = True, out_dir: Path | None = None) -> JourneyResult:
    """Walk the whole journey; raises on the first step that does not behave.

    ``out_dir`` keeps what a family or a calendar would get: the meeting's .ics files and the printed SIP.
    """
    result = JourneyResult()
    mentor = {"role": "professional", "user": "mentor.anna"}
    run = uuid.uuid4().hex[:8]

    fed.out("1. Upptäcka: the mentor raises a concern by the child's stage and home municipality")
    result.concern = _ok(fed.call("school", "intake", "POST", "/concerns", **mentor, idempotency_key=f"{run}-c", body={
        "child_stage": "compulsory_school", "home_municipality": "0484", "child": CHILD,
        "wheel_areas": ["trygghet", "hemmet", "relationer"],
        "description": "Frånvaron har ökat under hösten; eleven verkar orolig."}, step="concern raised"))
    case_id = result.concern["case_id"]
    # The rules chose the unit (a 13-year-old in compulsory school in Eskilstuna: Västerskolan 7-9) and its BBA.
    fed.out(f"   routed by {result.concern['routed_by']} to unit {result.concern['unit_id']}, "
            f"BBA {result.concern['bba_user']}")
    bba = {"role": "bba", "user": result.concern["bba_user"]}
    fed.until("the concern in the BBA's inbox", lambda: any(
        item["case_id"] == case_id for item in fed.call("school", "intake", "GET", "/inbox", **bba).json()))
    fed.call("school", "intake", "GET", "/inbox", **bba, step="routed to the BBA's inbox")

    fed.out("2. Kartlägga: the BBA maps the child on the Sörmland wheel, with the child's and the guardians' views")
    # Intake opened the child's case; the other services learn it from intake's event in a moment.
    mapping = _ok(fed.until("mapping to learn the case", _once_the_case_is_known(partial(
        fed.call, "school", "mapping", "POST", "/mappings", **bba, idempotency_key=f"{run}-m",
        body={"case_id": case_id, "wheel_id": "sormland"}, step="mapping opened"))))
    for area, level in (("trygghet", "serious_concern"), ("hemmet", "some_concern"),
                        ("relationer", "some_concern"), ("larande", "no_concern")):
        _ok(fed.call("school", "mapping", "PUT", f"/mappings/{mapping['id']}/areas/{area}", **bba,
                     body={"level": level, "note": "Från samtal med eleven och vårdnadshavarna."},
                     step=f"area {area}: {level}"))
    # The wheel is used in the conversation with the child and the guardians: their views are their own.
    for perspective, area, level, note in (
            ("child", "trygghet", "serious_concern", "Eleven säger att det är stökigt hemma på kvällarna."),
            ("guardians", "trygghet", "some_concern", "Vårdnadshavarna oroar sig för sömnen."),
            ("child", "larande", "some_concern", "Eleven tycker att matten har blivit svår.")):
        _ok(fed.call("school", "mapping", "PUT", f"/mappings/{mapping['id']}/areas/{area}/perspectives/{perspective}",
                     **bba, body={"level": level, "note": note}, step=f"{area}: the {perspective}'s view"))
    _ok(fed.call("school", "mapping", "PUT", f"/mappings/{mapping['id']}/questions", **bba, body={
        "has_all_information": False, "information_note": "Hälsa och hemsituation behöver belysas.",
        "obstacles": "Otrygghet och oro hemma.", "own_actions": "Samtal med mentor varje vecka.",
        "organisation_actions": "Elevhälsan följer närvaron.",
        "help_needed": "Stöd från socialtjänst och regionens hälso- och sjukvård."}, step="five questions"))
    result.mapping = _ok(fed.call("school", "mapping", "POST", f"/mappings/{mapping['id']}/complete", **bba,
                                  idempotency_key=f"{run}-mc", body={"trappan_step": 2}, step="mapping completed"))
    invited = [org for org in result.mapping["suggested_orgs"] if org in fed.urls]
    for suggestion in result.mapping["suggestions"]:
        fed.out(f"   suggested: {suggestion['org']} ({suggestion['name']}), roles {', '.join(suggestion['roles'])}, "
                f"for {', '.join(suggestion['areas'])}")

    fed.out("   Orosanmälan from the mapping: to social services at once, with no consent (SoL 14 kap. 1 §)")
    report = _ok(fed.until("intake to learn the mapping", _once_the_case_is_known(partial(
        fed.call, "school", "intake", "POST", f"/cases/{case_id}/reports", **bba, idempotency_key=f"{run}-r",
        body={"grounds": "Eleven berättar om bråk och oro hemma på kvällarna; sömnen och närvaron påverkas.",
              "mapping_id": mapping["id"]}, step="orosanmälan filed"), fields=("mapping_id",))))
    result.report = fed.until("social services' acknowledgement", lambda: (
        lambda found: found if found["status"] == "acknowledged" else None)(
        fed.call("school", "intake", "GET", f"/reports/{report['id']}", **bba).json()))
    fed.call("school", "intake", "GET", f"/reports/{report['id']}", **bba,
             step=f"acknowledged by {result.report['to_org']}")
    desk = {"role": "bba", "user": "mottagning.ifo"}
    received_path = f"/received-reports/{result.report['receiver_reference']}"
    result.received_report = _ok(fed.call("social", "intake", "GET", received_path, **desk,
                                          step="social services' intake desk reads it"))

    meeting_body = {"case_id": case_id, "kind": "samverkansmote", "mapping_id": mapping["id"], "child": CHILD,
                    "scheduled_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
                    "concern_summary": "Ökad frånvaro, oro i hemmet. Kartläggning klar, Trappan steg 2."}

    fed.out("3. Without consent the invitation is refused; an anonymous consultation goes instead, and is answered")
    refused = fed.until("meetings to learn the case and the mapping", _once_the_case_is_known(partial(
        fed.call, "school", "meetings", "POST", "/meetings", **bba, body=meeting_body, step="meeting refused"),
        fields=("case_id", "mapping_id")))
    result.refused = _ok(refused, 403)
    fed.out(f"   reason: {result.refused['detail']}")
    result.consultation = _ok(fed.call("school", "meetings", "POST", "/consultations", **bba,
                                       idempotency_key=f"{run}-q", body={
        "invited_orgs": ["social"], "age_band": "10-12", "wheel_areas": ["trygghet", "hemmet"],
        "question": "Hur kan vi stötta en elev med ökande frånvaro och oro hemma?"}, step="anonymous consultation"))
    social_staff = {"role": "bba", "user": "bba.ifo"}
    received = fed.until("the consultation at social services", lambda: next((
        item for item in fed.call("social", "meetings", "GET", "/consultations/received", **social_staff).json()
        if item["id"] == result.consultation["id"]), None))
    fed.call("social", "meetings", "GET", "/consultations/received", **social_staff,
             step="social services received it (no identity)")
    _ok(fed.call("social", "meetings", "POST", f"/consultations/received/{received['id']}/answer", **social_staff,
                 idempotency_key=f"{run}-qa", body={
        "kind": "can_help", "text": "Vi kan hjälpa till: be om samtycke och bjud in oss till ett samverkansmöte."},
        step="social services answer"))
    result.consultation_answers = fed.until("the answer at the school", lambda: fed.call(
        "school", "meetings", "GET", f"/consultations/{result.consultation['id']}", **bba).json()["answers"])
    fed.call("school", "meetings", "GET", f"/consultations/{result.consultation['id']}", **bba,
             step=f"the answer arrived: {result.consultation_answers[0]['kind']}")

    fed.out("4. Samtycke: both guardians consent, for the meeting and for a SIP, and the child's view is recorded")
    now = datetime.now(UTC)
    consent_body = {
        "case_id": case_id, "child": {"personnummer": CHILD["personnummer"]}, "custody": "joint",
        "grantors": [{"role": "guardian", "name": "Vårdnadshavare 1", "given_at": now.isoformat()},
                     {"role": "guardian", "name": "Vårdnadshavare 2", "given_at": now.isoformat()}],
        "child_view": {"heard": True, "agrees": True, "note": "Eleven vill att mötet blir av."},
        "receiving_orgs": invited, "categories": ["identity", "concern", "mapping_summary"],
        "purpose": "coordination_meeting", "valid_from": (now - timedelta(minutes=1)).isoformat(),
        "valid_until": (now + timedelta(days=180)).isoformat()}
    result.consent = _ok(fed.until("consent to learn the case", _once_the_case_is_known(partial(
        fed.call, "school", "consent", "POST", "/consents", **bba, idempotency_key=f"{run}-s", body=consent_body,
        step="consent recorded: samverkansmöte"))))
    result.sip_consent = _ok(fed.call("school", "consent", "POST", "/consents", **bba, idempotency_key=f"{run}-sip",
                                      body={**consent_body, "purpose": "sip"}, step="consent recorded: SIP"))

    fed.out("5. Samarbeta: the samverkansmöte is called from the mapping; each organisation answers")
    # The meetings service learns of the consent by event; until it has, the call is refused (403)
    # and writes nothing, so repeating it with the same Idempotency-Key is safe.
    def call(body: dict[str, Any], key: str) -> Callable[[], httpx.Response | None]:
        def attempt() -> httpx.Response | None:
            response = fed.call("school", "meetings", "POST", "/meetings", **bba, idempotency_key=key, body=body)
            return response if response.status_code != 403 else None
        return attempt

    response = fed.until("meetings to see the consent", call(meeting_body, f"{run}-meet"))
    result.meeting = _ok(response, 201)
    result.meeting_trace_id = response.headers.get("X-Trace-Id", "")
    meeting_path = f"/meetings/{result.meeting['id']}"
    fed.out(f"[school meetings] {'POST':<4} {'/meetings':<44} -> {response.status_code}  "
            f"trace {result.meeting_trace_id}  meeting called; the receivers handle it in this trace")
    for org in invited:
        receiver = _receiving_bba(org)
        found = fed.until(f"the invitation at {org}", partial(_received_invitation, fed, org, result.meeting["id"]))
        result.received[org] = found
        fed.call(org, "meetings", "GET", "/received-invitations", **receiver,
                 step=f"{org} stored the invitation in its own database")
    for org, participant in (("region", {"role": "BUP-läkare", "user": "lakare.bup"}),
                             ("social", {"role": "familjebehandlare", "user": "familjebehandlare.kim"})):
        if org in invited:
            _ok(fed.call(org, "meetings", "POST", f"/received-invitations/{result.received[org]['id']}/accept",
                         **_receiving_bba(org), idempotency_key=f"{run}-acc-{org}",
                         body={"participants": [participant]}, step=f"{org} accepts, sending {participant['role']}"))
    result.answers = fed.until("both answers at the school", lambda: (
        lambda invitations: invitations if all(i.get("answer") == "accepted" for i in invitations) else None)(
        fed.call("school", "meetings", "GET", meeting_path, **bba).json()["invitations"]))
    fed.call("school", "meetings", "GET", meeting_path, **bba, step="the meeting shows each organisation's answer")
    calendar = fed.call("school", "meetings", "GET", f"{meeting_path}/calendar.ics", **bba,
                        step="the meeting as a calendar invitation")
    result.calendar = calendar.content
    _saved(out_dir, "samverkansmote.ics", calendar.content, fed.out)
    if "region" in invited:
        region_calendar = fed.call("region", "meetings", "GET",
                                   f"/received-invitations/{result.received['region']['id']}/calendar.ics",
                                   role="professional", user="lakare.bup", step="the BUP doctor's own calendar file")
        result.received_calendar = region_calendar.content
        _saved(out_dir, "samverkansmote-region.ics", region_calendar.content, fed.out)

    fed.out("6. At the meeting: coordinator (the child's wish first), plan and follow-up")
    wish = {"org": "social", "person": "familjebehandlare.kim"}
    result.coordinator = _ok(fed.call("school", "meetings", "PUT", f"{meeting_path}/coordinator",
                                      **bba, body={"child_wish": wish, "appointed": {"org": "social",
                                                   "user": "familjebehandlare.kim"}},
                                      step="coordinator as the child wished"))
    for action, org in (("Närvaroplan och anpassningar i skolan", "school"),
                        ("Bedömning av psykisk hälsa", "region")):
        result.plan_items.append(_ok(fed.call(
            "school", "meetings", "POST", f"{meeting_path}/plan-items", **bba,
            idempotency_key=f"{run}-p-{org}", body={"action": action, "responsible_org": org},
            step=f"plan item for {org}")))
    result.follow_up = _ok(fed.call("school", "meetings", "POST", f"{meeting_path}/follow-up",
                                    **bba, idempotency_key=f"{run}-f", body={
        "follow_up_at": (datetime.now(UTC) + timedelta(days=49)).isoformat()}, step="follow-up booked"))

    _sip(fed, result, bba=bba, case_id=case_id, mapping_id=mapping["id"], invited=invited, run=run,
         out_dir=out_dir)

    if withdraw:
        fed.out("8. The guardians withdraw consent: nothing more leaves, receivers forget the child and confirm")
        result.withdrawn = _ok(fed.call("school", "consent", "POST", f"/consents/{result.consent['id']}/withdraw",
                                        **bba, body={"withdrawn_by": "guardian"}, step="consent withdrawn"))
        for org in invited:
            receiver = _receiving_bba(org)
            invitation_path = f"/received-invitations/{result.received[org]['id']}"
            fed.until(f"{org} to mark the invitation withdrawn", partial(
                _has_status, fed, org, invitation_path, receiver, "withdrawn"))
            fed.call(org, "meetings", "GET", invitation_path, **receiver,
                     step=f"{org} removed the child's identity")
        consent_path = f"/consents/{result.consent['id']}"
        result.receipts = fed.until("every receiver's withdrawal receipt at the school",
                                    partial(_all_purged, fed, consent_path, bba))
        fed.call("school", "consent", "GET", consent_path, **bba, step="receipts: each receiver confirmed")
        # The school's consent service decides every disclosure from its own record: refused at once.
        result.refused_after_withdrawal = _ok(fed.call("school", "meetings", "POST", "/meetings", **bba,
                                                       body=meeting_body, step="a new invitation is refused"), 403)
        fed.out(f"   reason: {result.refused_after_withdrawal['detail']}")
    return result


def _sip(fed: FederationClient, result: JourneyResult, *, bba: dict[str, str], case_id: str, mapping_id: str,
         invited: list[str], run: str, out_dir: Path | None) -> None:
    """Step 7: a SIP that region and the school both hold, and a follow-up that turns overdue.

    The SIP meeting runs on the demo's second clock: it is set a few seconds ahead, and its follow-up a
    few seconds after it, so the scheduler (which a development stack runs every second) is seen to
    mark the follow-up overdue when nobody records it held, as it would weeks later in real life.
    """
    fed.out("7. SIP: the plan with two principals reaches region, which moves its own action on; the follow-up "
            "turns overdue")
    starts = datetime.now(UTC) + timedelta(seconds=3)
    sip_body = {"case_id": case_id, "kind": "sip", "mapping_id": mapping_id, "child": CHILD,
                "scheduled_at": starts.isoformat(), "invited_orgs": [org for org in invited if org == "region"],
                "concern_summary": "SIP: närvaro, oro hemma, psykisk hälsa."}
    result.sip_meeting = _ok(fed.call("school", "meetings", "POST", "/meetings", **bba, idempotency_key=f"{run}-sip-m",
                                      body=sip_body, step="SIP meeting called (under the SIP consent)"), 201)
    path = f"/meetings/{result.sip_meeting['id']}"
    _ok(fed.call("school", "meetings", "PUT", f"{path}/coordinator", **bba, body={
        "child_wish": {"org": "school", "person": bba["user"]}, "appointed": {"org": "school", "user": bba["user"]}},
        step="samordningsperson: the BBA, as the child wished"))
    _ok(fed.call("school", "meetings", "PUT", f"{path}/overall-responsibility", **bba, body={"org": "school"},
                 step="overall responsibility: the school"))
    today = datetime.now(UTC).date()
    items = [("Närvaroplan med anpassningar", "school", {"responsible_person": "mentor.anna"}, 30),
             ("Bedömning hos BUP", "region", {"responsible_person": "lakare.bup"}, 60),
             ("Läxhjälp två kvällar i veckan", "others", {"responsible_party": "Föreningen Läxhjälpen"}, 90)]
    for action, org, who, days in items:
        result.sip_items.append(_ok(fed.call("school", "meetings", "POST", f"{path}/plan-items", **bba,
                                             idempotency_key=f"{run}-sip-{org}", body={
            "action": action, "responsible_org": org, **who, "due": (today + timedelta(days=days)).isoformat()},
            step=f"SIP action for {org}")))
    region_item = next(item for item in result.sip_items if item["responsible_org"] == "region")
    coordinator = _receiving_bba("region")
    result.received_plan = fed.until("the SIP at region", lambda: (
        lambda response: response.json() if response.status_code == 200 and len(response.json()["items"]) == 3
        else None)(fed.call("region", "meetings", "GET", f"/received-plans/{result.sip_meeting['id']}",
                            **coordinator)))
    fed.call("region", "meetings", "GET", f"/received-plans/{result.sip_meeting['id']}", **coordinator,
             step="region holds the SIP in its own database")
    _ok(fed.call("region", "meetings", "POST",
                 f"/received-plans/{result.sip_meeting['id']}/items/{region_item['id']}/status",
                 **coordinator, body={"status": "in_progress"}, step="region moves its own action on"), 200, 202)
    result.sip_plan = fed.until("region's report at the school", lambda: (
        lambda plan: plan if any(item["id"] == region_item["id"] and item["status"] == "in_progress"
                                 for item in plan["items"]) else None)(
        fed.call("school", "meetings", "GET", f"{path}/plan", **bba).json()))
    fed.call("school", "meetings", "GET", f"{path}/plan", **bba, step="the school's plan shows region's progress")
    printed = fed.call("school", "meetings", "GET", f"{path}/plan.html", **bba, step="the SIP printed for the family")
    _saved(out_dir, "sip.html", printed.content, fed.out)
    result.sip_follow_up = _ok(fed.call("school", "meetings", "POST", f"{path}/follow-up", **bba,
                                        idempotency_key=f"{run}-sip-f", body={
        "follow_up_at": (starts + timedelta(seconds=2)).isoformat()}, step="follow-up booked, seconds later"))
    follow_up_id = result.sip_follow_up["follow_up_id"]
    result.overdue = fed.until("the follow-up to turn overdue", lambda: next((
        follow_up for follow_up in fed.call("school", "meetings", "GET", "/follow-ups?overdue=true", **bba).json()[
            "follow_ups"] if follow_up["id"] == follow_up_id), None), timeout=30.0)
    fed.call("school", "meetings", "GET", "/follow-ups?overdue=true", **bba,
             step="the follow-up nobody held is overdue")
    calendar = fed.call("school", "meetings", "GET", f"/meetings/{follow_up_id}/calendar.ics", **bba,
                        step="the follow-up as a calendar invitation")
    _saved(out_dir, "uppfoljning.ics", calendar.content, fed.out)


def main(argv: list[str] | None = None) -> int:
    """``tillsammans demo``: run the journey against the stack described by stack.json."""
    parser = argparse.ArgumentParser(prog="tillsammans demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(".tillsammans"), help="state folder of `tillsammans up`")
    args = parser.parse_args(argv)
    stack_file = args.root / "stack.json"
    if not stack_file.exists():
        print(f"no running stack: {stack_file} not found; start one with `make up`")
        return 1
    run_journey(FederationClient.from_stack_file(stack_file), out_dir=args.root / "demo")
    print("journey complete")
    return 0
