"""Recurring forums across organisations (decision 0027): school holds an elevhälsoteam with region and
social services as members, puts anonymous consultations on an occurrence's agenda, and the answers
travel back. School, region and social each run their own meetings service and database over one
real nats-server with an account each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlmodel import Session, select

from tillsammans_common.events import Envelope
from tillsammans_common.events.meetings import AgendaItemPlaced, ConsultationAnswered, ForumDefined
from tillsammans_common.messaging.egress import send_anonymous
from tillsammans_common.models import DeadLetter, OutboxMessage
from tillsammans_common.testing import Federation, bearer, count_rows, engine_of, tables_containing, wait_for
from tillsammans_meetings import forums
from tillsammans_meetings.config import MeetingsSettings
from tillsammans_meetings.main import create_app
from tillsammans_meetings.models import AgendaItem, Forum, GivenAnswer, ReceivedAnswer

SCHOOL_BBA = bearer("school", "bba", "bba.norrskolan")
REGION_BUP = bearer("region", "professional", "psykolog.bup")
SOCIAL_IFO = bearer("social", "professional", "socialsekreterare.ifo")
STOCKHOLM = ZoneInfo("Europe/Stockholm")


@contextmanager
def _federation_of_three(federation: Federation) -> Iterator[tuple[TestClient, TestClient, TestClient]]:
    settings = [MeetingsSettings(**federation.settings(org)) for org in ("school", "region", "social")]  # type: ignore[arg-type]
    with (TestClient(create_app(settings[0])) as school, TestClient(create_app(settings[1])) as region,
          TestClient(create_app(settings[2])) as social):
        yield school, region, social


def _forum_body(**overrides: Any) -> dict[str, Any]:
    tomorrow = (datetime.now(STOCKHOLM) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    body: dict[str, Any] = {
        "name": "Elevhälsoteam Norrskolan", "kind": "elevhalsoteam", "unit_id": "norrskolan",
        "member_orgs": ["region", "social"], "rrule": "FREQ=MONTHLY;BYDAY=1TU", "starts_at": tomorrow.isoformat(),
        "duration_minutes": 90, "location": "Konferensrum 2, Norrskolan"}
    body.update(overrides)
    return body


def _consultation(school: TestClient, question: str, *, invited: list[str]) -> dict[str, Any]:
    sent = school.post("/consultations", headers=SCHOOL_BBA, json={
        "invited_orgs": invited, "age_band": "10-12", "wheel_areas": ["trygghet", "hemmet"], "question": question})
    assert sent.status_code == 201, sent.text
    body: dict[str, Any] = sent.json()
    return body


def _forum_at(client: TestClient, headers: dict[str, str], forum_id: str) -> dict[str, Any] | None:
    forums = client.get("/forums", headers=headers)
    assert forums.status_code == 200, forums.text
    return next((forum for forum in forums.json() if forum["id"] == forum_id), None)


def test_a_monthly_forum_with_two_consultations_on_its_agenda_and_answers_travelling_back(
        federation: Federation) -> None:
    with _federation_of_three(federation) as (school, region, social):
        defined = school.post("/forums", headers=SCHOOL_BBA, json=_forum_body())
        assert defined.status_code == 201, defined.text
        forum = defined.json()
        assert (forum["owner_org"], forum["rrule"], forum["member_orgs"]) == (
            "school", "FREQ=MONTHLY;BYDAY=1TU", ["region", "social"])

        # Both members learn of the forum (its definition only: no child data in it).
        for client, headers in ((region, REGION_BUP), (social, SOCIAL_IFO)):
            seen = wait_for(lambda c=client, h=headers: _forum_at(c, h, forum["id"]), message="the forum at a member")
            assert seen == forum
        occurrences = school.get(f"/forums/{forum['id']}/occurrences", headers=SCHOOL_BBA).json()
        assert len(occurrences) >= 5  # monthly, in the default 180 days
        assert [datetime.fromisoformat(o["starts_at"]).astimezone(STOCKHOLM).weekday() for o in occurrences] == [
            1] * len(occurrences)  # every first Tuesday, 09:00 in Stockholm
        assert region.get(f"/forums/{forum['id']}/occurrences", headers=REGION_BUP).json() == occurrences
        first = occurrences[0]["date"]

        # Two anonymous consultations, asked of region only, go on the first occurrence's agenda.
        asked = [_consultation(school, "Elev med ökande frånvaro och oro hemma: hur kan vi stötta?",
                               invited=["region"]),
                 _consultation(school, "Förskolebarn med sen språkutveckling: vilka insatser finns?",
                               invited=["region"])]
        for consultation in asked:
            placed = school.post(f"/forums/{forum['id']}/occurrences/{first}/agenda", headers=SCHOOL_BBA,
                                 json={"consultation_id": consultation["id"]})
            assert placed.status_code == 201, placed.text
            assert placed.json()["question"] == consultation["question"]
        again = school.post(f"/forums/{forum['id']}/occurrences/{first}/agenda", headers=SCHOOL_BBA,
                            json={"consultation_id": asked[0]["id"]})
        assert again.status_code == 409

        # Each member sees the agenda: the questions, their age band and wheel areas, never who asked or about whom.
        url = f"/forums/{forum['id']}/occurrences/{first}/agenda"
        expected = [(c["id"], "school", "10-12", ["trygghet", "hemmet"], c["question"]) for c in asked]
        for client, headers in ((school, SCHOOL_BBA), (region, REGION_BUP), (social, SOCIAL_IFO)):
            agenda = wait_for(lambda c=client, h=headers: len(a := c.get(url, headers=h).json()) == 2 and a,
                              message="both consultations on the agenda")
            assert [(i["consultation_id"], i["from_org"], i["age_band"], i["wheel_areas"], i["question"])
                    for i in agenda] == expected
            assert all(set(item) == {"id", "forum_id", "occurrence_date", "consultation_id", "from_org", "age_band",
                                     "wheel_areas", "question"} for item in agenda)
        # Social was not asked directly: the agenda put both questions to it, so it can answer them.
        received = social.get("/consultations/received", headers=SOCIAL_IFO).json()
        assert sorted(item["id"] for item in received) == sorted(c["id"] for c in asked)

        # Region answers the first with advice, social the second with "we can help".
        advice = region.post(f"/consultations/received/{asked[0]['id']}/answer", headers=REGION_BUP,
                             json={"kind": "advice", "text": "Kartlägg frånvaron med hjulet; BUP:s första linje "
                                                             "kan ge råd till elevhälsan."})
        assert advice.status_code == 201, advice.text
        help_offer = social.post(f"/consultations/received/{asked[1]['id']}/answer", headers=SOCIAL_IFO,
                                 json={"kind": "can_help", "text": "Vi kan hjälpa: be om samtycke och bjud in oss."})
        assert help_offer.status_code == 201, help_offer.text
        assert (help_offer.json()["org"], help_offer.json()["kind"]) == ("social", "can_help")

        # The answers arrive at school and show on the consultations asked.
        def answers(consultation_id: str) -> list[dict[str, Any]]:
            detail = school.get(f"/consultations/{consultation_id}", headers=SCHOOL_BBA)
            assert detail.status_code == 200, detail.text
            found: list[dict[str, Any]] = detail.json()["answers"]
            return found

        first_answers = wait_for(lambda: answers(asked[0]["id"]), message="region's answer at school")
        assert [(a["org"], a["kind"], a["id"]) for a in first_answers] == [("region", "advice", advice.json()["id"])]
        second_answers = wait_for(lambda: answers(asked[1]["id"]), message="social's answer at school")
        assert [(a["org"], a["kind"], a["text"]) for a in second_answers] == [
            ("social", "can_help", "Vi kan hjälpa: be om samtycke och bjud in oss.")]
        detail = school.get(f"/consultations/{asked[1]['id']}", headers=SCHOOL_BBA).json()
        assert detail["invited_orgs"] == ["region"] and detail["asked_orgs"] == ["region", "social"]

        # Each invited organisation gets the series as iCalendar: the RRULE, a neutral summary, no identity.
        ics = social.get(f"/forums/{forum['id']}/calendar.ics", headers=SOCIAL_IFO)
        assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
        [event] = Calendar.from_ical(ics.content).walk("VEVENT")
        assert event["RRULE"].to_ical() == b"FREQ=MONTHLY;BYDAY=1TU"
        assert (event["SUMMARY"], event["LOCATION"]) == ("Elevhälsoteam", "Konferensrum 2, Norrskolan")
        assert event["UID"] == f"forum-{forum['id']}@school.tillsammans"
        assert event.decoded("DTSTART") == datetime.fromisoformat(forum["starts_at"])
        for needle in ("bba.norrskolan", "psykolog", "10-12", "frånvaro", "Elevhälsoteam Norrskolan"):
            assert needle.encode() not in ics.content
        assert school.get(f"/forums/{forum['id']}/calendar.ics", headers=SCHOOL_BBA).content.replace(
            b"\r\n ", b"").split(b"DTSTAMP")[0] == ics.content.replace(b"\r\n ", b"").split(b"DTSTAMP")[0]

        # Nothing that names a person crossed: the members hold no user of school's.
        assert tables_containing(engine_of(region), "bba.norrskolan") == []
        assert tables_containing(engine_of(social), "bba.norrskolan") == []


def test_an_answer_with_a_personnummer_in_any_form_is_refused_and_nothing_is_sent(federation: Federation) -> None:
    with _federation_of_three(federation) as (school, region, _):
        consultation = _consultation(school, "Hur stöttar vi en elev med oro?", invited=["region"])
        url = f"/consultations/received/{consultation['id']}/answer"
        wait_for(lambda: region.get("/consultations/received", headers=REGION_BUP).json(),
                 message="the consultation at region")
        outbox = count_rows(region, OutboxMessage)
        for written in ("20130412-1237", "130412-1237", "2013 04 12 - 1237", "201304121237", "13.04.12.12.37",
                        "１３０４１２－１２３７"):
            refused = region.post(url, headers=REGION_BUP, json={
                "kind": "advice", "text": f"Gäller det barnet {written}? Då känner vi till familjen."})
            assert refused.status_code == 422, (written, refused.text)
            assert refused.json()["errors"] == [{"field": "text", "reason": refused.json()["errors"][0]["reason"]}]
            assert written not in refused.text
        assert count_rows(region, GivenAnswer) == 0
        assert count_rows(region, OutboxMessage) == outbox
        # A clean answer still goes, and only it arrives.
        ok = region.post(url, headers=REGION_BUP, json={"kind": "advice", "text": "Kontakta elevhälsan först."})
        assert ok.status_code == 201, ok.text
        wait_for(lambda: count_rows(school, ReceivedAnswer) == 1, message="the clean answer at school")
        assert tables_containing(engine_of(school), "20130412", "130412-1237") == []


def test_a_forged_answer_is_refused_by_the_asker(federation: Federation) -> None:
    with _federation_of_three(federation) as (school, region, social):
        consultation = _consultation(school, "Hur stöttar vi en elev med oro?", invited=["region"])
        social_settings: MeetingsSettings = social.app.state.settings  # type: ignore[attr-defined]

        def forged(answering_org: str) -> ConsultationAnswered:
            return ConsultationAnswered(
                answer_id=f"00000000-0000-4000-8000-00000000000{1 if answering_org == 'social' else 2}",
                consultation_id=consultation["id"], answering_org=answering_org, asking_org="school", kind="advice",
                text="Vi vet vem barnet är.", answered_at=datetime.now(UTC))

        # Social was never asked (not invited, no forum put it there): over its real broker account it answers
        # anyway, once in its own name and once in region's.
        with Session(engine_of(social)) as session:
            send_anonymous(session, forged("social"), settings=social_settings, to_org="school",
                           subject=consultation["id"])
            send_anonymous(session, forged("region"), settings=social_settings, to_org="school",
                           subject=consultation["id"])
            session.commit()

        def dead_letters() -> list[DeadLetter]:
            with Session(engine_of(school)) as session:
                return list(session.exec(select(DeadLetter).where(
                    DeadLetter.event_type == ConsultationAnswered.type)).all())

        letters = wait_for(lambda: len(found := dead_letters()) == 2 and found, message="school to refuse both")
        assert sorted(letter.reason for letter in letters) == [
            "Reject: answering_org names another organisation than the sender",
            "Reject: the consultation was not put to the answering organisation"]
        assert all(b"barnet" not in letter.body for letter in letters)  # a refused message's data is not kept
        assert count_rows(school, ReceivedAnswer) == 0
        # Region, which was asked, is still heard.
        wait_for(lambda: region.get("/consultations/received", headers=REGION_BUP).json(),
                 message="the consultation at region")
        answered = region.post(f"/consultations/received/{consultation['id']}/answer", headers=REGION_BUP,
                               json={"kind": "advice", "text": "Börja med en kartläggning."})
        assert answered.status_code == 201, answered.text
        detail = wait_for(lambda: (d := school.get(f"/consultations/{consultation['id']}", headers=SCHOOL_BBA)
                                   .json())["answers"] and d, message="region's answer at school")
        assert [answer["org"] for answer in detail["answers"]] == ["region"]


def test_forum_and_agenda_rules(federation: Federation, seed: Any) -> None:
    with _federation_of_three(federation) as (school, region, _social):
        # A consultation about a case of school's is read only by those on the case (the link is who the child is).
        seed(school)
        about_case = school.post("/consultations", headers=SCHOOL_BBA, json={
            "invited_orgs": ["region"], "age_band": "10-12", "wheel_areas": ["trygghet"], "case_id": "case-1",
            "question": "Hur stöttar vi en elev med oro?"}).json()
        assert school.get(f"/consultations/{about_case['id']}", headers=SCHOOL_BBA).status_code == 200
        other_bba = bearer("school", "bba", "bba.solrosen", units=["solrosen"])
        assert school.get(f"/consultations/{about_case['id']}", headers=other_bba).status_code == 403

        outbox = count_rows(school, OutboxMessage)
        for rule in ("FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "nonsense"):
            refused = school.post("/forums", headers=SCHOOL_BBA, json=_forum_body(rrule=rule))
            assert refused.status_code == 422, (rule, refused.text)
            assert [error["field"] for error in refused.json()["errors"]] == ["rrule"]
        smuggled = school.post("/forums", headers=SCHOOL_BBA, json=_forum_body(location="Hos 20130412-1237"))
        assert smuggled.status_code == 422
        assert school.post("/forums", headers=bearer("school", "professional"), json=_forum_body()).status_code == 403
        assert count_rows(school, Forum) == 0 and count_rows(school, OutboxMessage) == outbox

        forum = school.post("/forums", headers=SCHOOL_BBA, json=_forum_body(
            kind="barnhalsogrupp", rrule="FREQ=MONTHLY;INTERVAL=2;BYDAY=1TU", member_orgs=["region"])).json()
        dates = [o["date"] for o in school.get(f"/forums/{forum['id']}/occurrences", headers=SCHOOL_BBA).json()]
        assert len(dates) == 3  # every other month, in 180 days
        consultation = _consultation(school, "Hur stöttar vi ett barn med oro?", invited=["region"])
        base = f"/forums/{forum['id']}/occurrences"
        not_a_meeting = (datetime.fromisoformat(dates[0]) + timedelta(days=1)).date().isoformat()
        for day, field in ((not_a_meeting, "occurrence_date"), ("2020-01-07", "occurrence_date")):
            placed = school.post(f"{base}/{day}/agenda", headers=SCHOOL_BBA,
                                 json={"consultation_id": consultation["id"]})
            assert placed.status_code == 422, placed.text
            assert [error["field"] for error in placed.json()["errors"]] == [field]
        unknown = school.post(f"{base}/{dates[0]}/agenda", headers=SCHOOL_BBA,
                              json={"consultation_id": "00000000-0000-4000-8000-000000000000"})
        assert [error["field"] for error in unknown.json()["errors"]] == ["consultation_id"]
        assert count_rows(school, AgendaItem) == 0
        too_wide = school.get(f"{base}?from=2027-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", headers=SCHOOL_BBA)
        assert too_wide.status_code == 422 and too_wide.json()["errors"][0]["field"] == "to"

        # A member sees the forum but does not set its agenda.
        wait_for(lambda: _forum_at(region, REGION_BUP, forum["id"]), message="the forum at region")
        member_placing = region.post(f"{base}/{dates[0]}/agenda", headers=bearer("region", "bba", "bba.bvc"),
                                     json={"consultation_id": consultation["id"]})
        assert member_placing.status_code == 403
        assert region.get(f"/forums/{forum['id']}", headers=bearer("region", "auditor")).status_code == 403
        # Social is no member of this barnhälsogrupp: nothing of it was ever addressed to social.
        with Session(engine_of(school)) as session:
            subjects = session.exec(select(OutboxMessage.nats_subject)).all()
        assert "inbox.region.school.meetings.forum.defined.v1" in subjects
        assert not [subject for subject in subjects if subject.startswith("inbox.social.")]


def test_a_member_refuses_forged_forums_and_agenda_items(federation: Federation) -> None:
    with _federation_of_three(federation) as (school, region, social):
        forum = school.post("/forums", headers=SCHOOL_BBA, json=_forum_body()).json()
        wait_for(lambda: _forum_at(region, REGION_BUP, forum["id"]), message="the forum at region")
        occurrence = school.get(f"/forums/{forum['id']}/occurrences", headers=SCHOOL_BBA).json()[0]["date"]
        social_settings: MeetingsSettings = social.app.state.settings  # type: ignore[attr-defined]
        starts_at = datetime.fromisoformat(forum["starts_at"])

        def defined(**overrides: Any) -> ForumDefined:
            fields: dict[str, Any] = {
                "forum_id": str(uuid.uuid4()), "owner_org": "social", "member_orgs": ["region"], "name": "Forum",
                "kind": "other", "rrule": "FREQ=MONTHLY", "starts_at": starts_at, "duration_minutes": 60,
                "location": "Rum 1"}
            fields.update(overrides)
            return ForumDefined(**fields)

        forgeries = [
            # Social, a member of school's forum, over its real broker account:
            defined(forum_id=forum["id"], name="Kapat"),  # takes over school's forum id
            defined(owner_org="school"),  # claims to be school
            defined(rrule="FREQ=SECONDLY"),  # a rule region's own API would refuse
            AgendaItemPlaced(  # puts a question on school's forum
                agenda_item_id=str(uuid.uuid4()), forum_id=forum["id"], occurrence_date=occurrence,
                owner_org="social", member_orgs=["region"], consultation_id=str(uuid.uuid4()), age_band="10-12",
                wheel_areas=["trygghet"], question="Planterad fråga"),
        ]
        with Session(engine_of(social)) as session:
            for event in forgeries:
                send_anonymous(session, event, settings=social_settings, to_org="region", subject=str(uuid.uuid4()))
            session.commit()

        def refused() -> list[str]:
            with Session(engine_of(region)) as session:
                return sorted(letter.reason for letter in session.exec(select(DeadLetter)).all())

        reasons = wait_for(lambda: len(found := refused()) == 4 and found, message="region to refuse all four")
        assert reasons == [
            "Reject: not a forum this service accepts (kind or rrule)",
            "Reject: owner_org names another organisation than the sender",
            "Reject: the forum belongs to another organisation",
            "Reject: the forum id belongs to another organisation's forum"]
        # School's forum is as school defined it, with an empty agenda, and none of the forgeries was stored.
        assert _forum_at(region, REGION_BUP, forum["id"]) == forum
        assert region.get(f"/forums/{forum['id']}/occurrences/{occurrence}/agenda", headers=REGION_BUP).json() == []
        assert [f["id"] for f in region.get("/forums", headers=REGION_BUP).json()] == [forum["id"]]


def test_a_changed_forum_reaches_its_members_and_a_member_taken_out_forgets_it(federation: Federation) -> None:
    with _federation_of_three(federation) as (school, region, social):
        forum = school.post("/forums", headers=SCHOOL_BBA, json=_forum_body()).json()
        first = school.get(f"/forums/{forum['id']}/occurrences", headers=SCHOOL_BBA).json()[0]["date"]
        consultation = _consultation(school, "Hur stöttar vi en elev med oro?", invited=["region"])
        placed = school.post(f"/forums/{forum['id']}/occurrences/{first}/agenda", headers=SCHOOL_BBA,
                             json={"consultation_id": consultation["id"]})
        assert placed.status_code == 201, placed.text
        agenda_url = f"/forums/{forum['id']}/occurrences/{first}/agenda"
        wait_for(lambda: social.get(agenda_url, headers=SOCIAL_IFO).json() if _forum_at(
            social, SOCIAL_IFO, forum["id"]) else None, message="the agenda at social")

        assert region.put(f"/forums/{forum['id']}", headers=bearer("region", "bba", "bba.bvc"),
                          json=_forum_body()).status_code == 403
        too_often = school.put(f"/forums/{forum['id']}", headers=SCHOOL_BBA, json=_forum_body(rrule="FREQ=DAILY"))
        assert too_often.status_code == 422
        changed = school.put(f"/forums/{forum['id']}", headers=SCHOOL_BBA, json=_forum_body(
            member_orgs=["region"], rrule="FREQ=MONTHLY;INTERVAL=2;BYDAY=1TU", location="Rum 3"))
        assert changed.status_code == 200, changed.text
        assert (changed.json()["revision"], changed.json()["member_orgs"]) == (2, ["region"])

        at_region = wait_for(lambda: (f := _forum_at(region, REGION_BUP, forum["id"])) and f["revision"] == 2 and f,
                             message="the new revision at region")
        assert at_region == changed.json()
        wait_for(lambda: _forum_at(social, SOCIAL_IFO, forum["id"]) is None, message="social to forget the forum")
        assert social.get(f"/forums/{forum['id']}", headers=SOCIAL_IFO).status_code == 404
        assert social.get(agenda_url, headers=SOCIAL_IFO).status_code == 404
        assert tables_containing(engine_of(social), "Konferensrum 2") == []
        # The question was put to social while it was a member: it may still answer, and school accepts it.
        answered = social.post(f"/consultations/received/{consultation['id']}/answer", headers=SOCIAL_IFO,
                               json={"kind": "advice", "text": "Ta kontakt med familjebehandlarna."})
        assert answered.status_code == 201, answered.text
        wait_for(lambda: school.get(f"/consultations/{consultation['id']}", headers=SCHOOL_BBA).json()["answers"],
                 message="social's answer at school")

        # Out of order: an older definition arriving after the end changes nothing.
        old = ForumDefined(forum_id=forum["id"], owner_org="school", member_orgs=["region", "social"], name="Gammal",
                           kind="elevhalsoteam", rrule="FREQ=MONTHLY;BYDAY=1TU",
                           starts_at=datetime.fromisoformat(forum["starts_at"]), duration_minutes=90,
                           location="Konferensrum 2", revision=1)
        with Session(engine_of(social)) as session:
            forums.receive_forum(session, envelope=Envelope.wrap(old, source="/orgs/school/meetings",
                                                                 subject=forum["id"]), event=old)
            session.commit()
        assert _forum_at(social, SOCIAL_IFO, forum["id"]) is None
