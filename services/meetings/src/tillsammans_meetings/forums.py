"""Recurring forums (elevhälsoteam, barnhälsogrupp) with anonymous consultations on an occurrence's
agenda, and the answers to anonymous consultations travelling back to the asker (decision 0027).

Nothing here identifies a child: a forum is an organisation's meeting, an agenda item is an
anonymous consultation (age band, wheel areas, the question), and an answer is advice. Every text
that leaves is screened again on the way out (``send_anonymous``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from sqlmodel import Session, col, select

from tillsammans_common import policy
from tillsammans_common.audit import audit
from tillsammans_common.auth import Principal
from tillsammans_common.cases import get_case
from tillsammans_common.db import utcnow
from tillsammans_common.errors import Conflict, Forbidden, InvalidField, NotFound
from tillsammans_common.events import Envelope
from tillsammans_common.events.meetings import (
    AgendaItemPlaced,
    ConsultationAnswered,
    ForumDefined,
    ForumMembershipEnded,
)
from tillsammans_common.messaging.egress import send_anonymous
from tillsammans_common.messaging.refusals import Reject, Retry
from tillsammans_common.settings import ServiceSettings
from tillsammans_common.timestamps import as_utc
from tillsammans_meetings import recurrence
from tillsammans_meetings.models import (
    AgendaItem,
    AgendaItemCreate,
    AgendaItemPublic,
    AnswerCreate,
    AnswerKind,
    AnswerPublic,
    Consultation,
    ConsultationDetail,
    ConsultationPublic,
    Forum,
    ForumCreate,
    ForumKind,
    ForumPublic,
    GivenAnswer,
    Meeting,
    OccurrencePublic,
    ReceivedAgendaItem,
    ReceivedAnswer,
    ReceivedConsultation,
    ReceivedForum,
)
from tillsammans_meetings.service import CONSULTATION_PURPOSE, _invited_orgs

FORUM_PURPOSE = "forum"


def forum_view(forum: Forum | ReceivedForum, *, owner_org: str) -> ForumPublic:
    """A forum as its owner and its members see it."""
    return ForumPublic(id=forum.id, owner_org=owner_org, name=forum.name, kind=forum.kind,
                       member_orgs=list(forum.member_orgs), rrule=forum.rrule, starts_at=as_utc(forum.starts_at),
                       duration_minutes=forum.duration_minutes, location=forum.location, revision=forum.revision)


def _checked(settings: ServiceSettings, principal: Principal, data: ForumCreate) -> tuple[list[str], str]:
    """The members and the rule of a forum definition, by the rules of decision 27 (422 otherwise)."""
    if data.unit_id is not None:
        policy.check_unit_scope(principal, data.unit_id)
    members = _invited_orgs(settings, data.member_orgs, field="member_orgs")
    rule_text = data.rrule.strip().removeprefix("RRULE:")
    recurrence.parse(rule_text, starts_at=data.starts_at)
    return members, rule_text


def _share(session: Session, forum: Forum, *, settings: ServiceSettings) -> None:
    event = ForumDefined(forum_id=forum.id, owner_org=settings.org, member_orgs=list(forum.member_orgs),
                         name=forum.name, kind=forum.kind.value, rrule=forum.rrule, starts_at=as_utc(forum.starts_at),
                         duration_minutes=forum.duration_minutes, location=forum.location, revision=forum.revision)
    for org in forum.member_orgs:
        # Screened like any anonymous text: a name or room must not smuggle an identity out.
        send_anonymous(session, event, settings=settings, to_org=org, subject=forum.id)


def define_forum(session: Session, *, settings: ServiceSettings, principal: Principal,
                 data: ForumCreate) -> ForumPublic:
    """Define a recurring forum and share its definition (no child data) with each member organisation."""
    members, rule_text = _checked(settings, principal, data)
    forum = Forum(id=str(uuid.uuid4()), name=data.name, kind=data.kind, unit_id=data.unit_id, member_orgs=members,
                  rrule=rule_text, starts_at=data.starts_at, duration_minutes=data.duration_minutes,
                  location=data.location, created_by=principal.user)
    session.add(forum)
    _share(session, forum, settings=settings)
    audit(session, principal, "forum.define", purpose=FORUM_PURPOSE, record_id=forum.id)
    session.flush()
    return forum_view(forum, owner_org=settings.org)


def change_forum(session: Session, *, settings: ServiceSettings, principal: Principal, forum_id: str,
                 data: ForumCreate) -> ForumPublic:
    """Replace a forum's definition; members get the new revision, a member taken out is told to forget it.

    The agenda stays as it is: an item on a date the new rule no longer meets is still listed under that date.
    """
    forum = _owned(session, forum_id)
    members, rule_text = _checked(settings, principal, data)
    removed = [org for org in forum.member_orgs if org not in members]
    forum.name, forum.kind, forum.unit_id, forum.member_orgs = data.name, data.kind, data.unit_id, members
    forum.rrule, forum.starts_at, forum.duration_minutes = rule_text, data.starts_at, data.duration_minutes
    forum.location, forum.revision, forum.updated_at = data.location, forum.revision + 1, utcnow()
    session.add(forum)
    _share(session, forum, settings=settings)
    for org in removed:
        send_anonymous(session, ForumMembershipEnded(forum_id=forum.id, owner_org=settings.org, member_org=org,
                                                     revision=forum.revision),
                       settings=settings, to_org=org, subject=forum.id)
    audit(session, principal, "forum.change", purpose=FORUM_PURPOSE, record_id=forum.id)
    session.flush()
    return forum_view(forum, owner_org=settings.org)


def _owned(session: Session, forum_id: str) -> Forum:
    forum = session.get(Forum, forum_id)
    if forum is None:
        if session.get(ReceivedForum, forum_id) is not None:
            raise Forbidden("only the organisation that holds a forum changes it or sets its agenda")
        raise NotFound("no such forum")
    return forum


def _own_or_received(session: Session, *, settings: ServiceSettings,
                     forum_id: str) -> tuple[Forum | ReceivedForum, str]:
    forum: Forum | ReceivedForum | None = session.get(Forum, forum_id)
    if forum is not None:
        return forum, settings.org
    forum = session.get(ReceivedForum, forum_id)
    if forum is None or forum.ended_at is not None:
        raise NotFound("no such forum")
    return forum, forum.from_org


def get_forum(session: Session, *, settings: ServiceSettings, principal: Principal, forum_id: str) -> ForumPublic:
    """One forum this organisation holds or is a member of."""
    forum, owner = _own_or_received(session, settings=settings, forum_id=forum_id)
    audit(session, principal, "forum.read", purpose=FORUM_PURPOSE, record_id=forum.id)
    return forum_view(forum, owner_org=owner)


def list_forums(session: Session, *, settings: ServiceSettings, principal: Principal) -> list[ForumPublic]:
    """The forums this organisation holds, then those it is a member of, each by name."""
    own = session.exec(select(Forum).order_by(col(Forum.name), col(Forum.id))).all()
    received = session.exec(select(ReceivedForum).where(col(ReceivedForum.ended_at).is_(None))
                            .order_by(col(ReceivedForum.name), col(ReceivedForum.id))).all()
    audit(session, principal, "forum.list", purpose=FORUM_PURPOSE)
    return ([forum_view(forum, owner_org=settings.org) for forum in own]
            + [forum_view(forum, owner_org=forum.from_org) for forum in received])


def list_occurrences(session: Session, *, settings: ServiceSettings, forum_id: str, start: datetime | None,
                     end: datetime | None, now: datetime) -> list[OccurrencePublic]:
    """The forum's occurrences in a window (from now, 180 days, unless given; at most 366 days)."""
    forum, _ = _own_or_received(session, settings=settings, forum_id=forum_id)
    start = start or now
    end = end or start + timedelta(days=180)
    recurrence.check_window(start, end, now=now)
    rule = recurrence.parse(forum.rrule, starts_at=as_utc(forum.starts_at))
    found = recurrence.occurrences(rule, duration=timedelta(minutes=forum.duration_minutes), start=start, end=end)
    return [OccurrencePublic(date=item.date, starts_at=item.starts_at, ends_at=item.ends_at) for item in found]


def _names_of_case(session: Session, case_id: str | None) -> list[str]:
    # A consultation about a case of ours is screened against that child's name as well.
    if case_id is None:
        return []
    return list(session.exec(select(Meeting.child_name).where(Meeting.case_id == case_id).distinct()).all())


def place_on_agenda(session: Session, *, settings: ServiceSettings, principal: Principal, forum_id: str,
                    occurrence_date: date, data: AgendaItemCreate, now: datetime) -> AgendaItemPublic:
    """Put one of this organisation's anonymous consultations on a future occurrence of its own forum."""
    forum = _owned(session, forum_id)
    consultation = session.get(Consultation, data.consultation_id)
    if consultation is None:
        raise InvalidField("consultation_id", "is not an anonymous consultation of this organisation")
    if abs(datetime(occurrence_date.year, occurrence_date.month, occurrence_date.day,
                    tzinfo=now.tzinfo) - now) > recurrence.HORIZON:
        raise InvalidField("occurrence_date", "must lie within five years of today")
    rule = recurrence.parse(forum.rrule, starts_at=as_utc(forum.starts_at))
    occurrence = recurrence.occurrence_on(rule, duration=timedelta(minutes=forum.duration_minutes),
                                          day=occurrence_date)
    if occurrence is None:
        raise InvalidField("occurrence_date", "the forum does not meet that day")
    if occurrence.starts_at <= now:
        raise InvalidField("occurrence_date", "that occurrence has already begun; choose a future one")
    if session.exec(select(AgendaItem).where(
            AgendaItem.forum_id == forum.id, AgendaItem.occurrence_date == occurrence_date,
            AgendaItem.consultation_id == consultation.id)).first() is not None:
        raise Conflict("the consultation is already on that occurrence's agenda")
    item = AgendaItem(id=str(uuid.uuid4()), forum_id=forum.id, occurrence_date=occurrence_date,
                      consultation_id=consultation.id, put_to=list(forum.member_orgs), placed_by=principal.user)
    session.add(item)
    event = AgendaItemPlaced(agenda_item_id=item.id, forum_id=forum.id, occurrence_date=occurrence_date,
                             owner_org=settings.org, member_orgs=list(forum.member_orgs),
                             consultation_id=consultation.id, age_band=consultation.age_band.value,
                             wheel_areas=list(consultation.wheel_areas), question=consultation.question)
    names = _names_of_case(session, consultation.case_id)
    for org in forum.member_orgs:
        # Screened again on the way: the agenda is a new way out for the question.
        send_anonymous(session, event, settings=settings, to_org=org, subject=forum.id, names=names)
    audit(session, principal, "forum.agenda.place", purpose=CONSULTATION_PURPOSE, record_id=item.id)
    session.flush()
    return _agenda_view(item.id, forum_id=forum.id, occurrence_date=occurrence_date, from_org=settings.org,
                        consultation_id=consultation.id, age_band=consultation.age_band.value,
                        wheel_areas=list(consultation.wheel_areas), question=consultation.question)


def _agenda_view(item_id: str, *, forum_id: str, occurrence_date: date, from_org: str, consultation_id: str,
                 age_band: str, wheel_areas: list[str], question: str) -> AgendaItemPublic:
    return AgendaItemPublic(id=item_id, forum_id=forum_id, occurrence_date=occurrence_date, from_org=from_org,
                            consultation_id=consultation_id, age_band=age_band, wheel_areas=wheel_areas,
                            question=question)


def get_agenda(session: Session, *, settings: ServiceSettings, principal: Principal, forum_id: str,
               occurrence_date: date) -> list[AgendaItemPublic]:
    """An occurrence's agenda, for the forum's owner and its members alike: anonymous consultations only."""
    forum, owner = _own_or_received(session, settings=settings, forum_id=forum_id)
    items: list[AgendaItemPublic] = []
    if owner == settings.org:
        rows = session.exec(select(AgendaItem, Consultation).where(
            AgendaItem.forum_id == forum.id, AgendaItem.occurrence_date == occurrence_date,
            AgendaItem.consultation_id == Consultation.id).order_by(col(AgendaItem.placed_at), col(AgendaItem.id)))
        items = [_agenda_view(item.id, forum_id=forum.id, occurrence_date=item.occurrence_date, from_org=owner,
                              consultation_id=consultation.id, age_band=consultation.age_band.value,
                              wheel_areas=list(consultation.wheel_areas), question=consultation.question)
                 for item, consultation in rows.all()]
    else:
        received = session.exec(select(ReceivedAgendaItem, ReceivedConsultation).where(
            ReceivedAgendaItem.forum_id == forum.id, ReceivedAgendaItem.occurrence_date == occurrence_date,
            ReceivedAgendaItem.consultation_id == ReceivedConsultation.id)
            .order_by(col(ReceivedAgendaItem.received_at), col(ReceivedAgendaItem.id)))
        items = [_agenda_view(item.id, forum_id=forum.id, occurrence_date=item.occurrence_date, from_org=owner,
                              consultation_id=consultation.id, age_band=consultation.age_band,
                              wheel_areas=list(consultation.wheel_areas), question=consultation.question)
                 for item, consultation in received.all()]
    audit(session, principal, "forum.agenda.read", purpose=CONSULTATION_PURPOSE, record_id=forum.id)
    return items


def receive_forum(session: Session, *, envelope: Envelope, event: ForumDefined) -> None:
    """Store (or update) the definition of a forum another organisation holds with this one as a member.

    The highest revision wins: an older definition arriving late changes nothing.
    """
    forum = session.get(ReceivedForum, event.forum_id)
    if forum is not None and forum.from_org != envelope.source_org:
        raise Reject("the forum id belongs to another organisation's forum", code="foreign_record")
    try:
        kind = ForumKind(event.kind)
        # The same rules as the owner's: a member never expands a rule its own API would refuse.
        recurrence.parse(event.rrule, starts_at=as_utc(event.starts_at))
    except (ValueError, InvalidField):
        raise Reject("not a forum this service accepts (kind or rrule)", code="invalid_message") from None
    if forum is not None and forum.revision >= event.revision:
        return
    forum = forum or ReceivedForum(id=event.forum_id, from_org=envelope.source_org, name="", kind=kind,
                                   member_orgs=[], rrule="", starts_at=event.starts_at, duration_minutes=0,
                                   location="")
    forum.name, forum.kind, forum.member_orgs = event.name, kind, list(event.member_orgs)
    forum.rrule, forum.starts_at = event.rrule, as_utc(event.starts_at)
    forum.duration_minutes, forum.location = event.duration_minutes, event.location
    forum.revision, forum.ended_at = event.revision, None
    session.add(forum)


def receive_membership_ended(session: Session, *, envelope: Envelope, event: ForumMembershipEnded) -> None:
    """This organisation was taken out of a forum: keep only that it was a member, and of which revision."""
    forum = session.get(ReceivedForum, event.forum_id)
    if forum is not None and forum.from_org != envelope.source_org:
        raise Reject("the forum id belongs to another organisation's forum", code="foreign_record")
    if forum is not None and forum.revision > event.revision:
        return  # taken back in since: the newer definition stands
    # A stand-in when the end overtook the definition, so that the older definition cannot bring the forum back.
    forum = forum or ReceivedForum(id=event.forum_id, from_org=envelope.source_org, name="",
                                   kind=ForumKind.OTHER, member_orgs=[], rrule="", starts_at=utcnow(),
                                   duration_minutes=0, location="")
    forum.name = forum.location = forum.rrule = ""
    forum.member_orgs = []
    forum.revision, forum.ended_at = event.revision, utcnow()
    session.add(forum)
    for item in session.exec(select(ReceivedAgendaItem).where(ReceivedAgendaItem.forum_id == forum.id)).all():
        session.delete(item)


def receive_agenda_item(session: Session, *, envelope: Envelope, event: AgendaItemPlaced) -> None:
    """Store an anonymous consultation placed on a forum's agenda; it can then be answered like any other."""
    sender = envelope.source_org
    forum = session.get(ReceivedForum, event.forum_id)
    if forum is None:
        # The definition travels on another consumer and may not have arrived yet.
        raise Retry("the forum's definition has not arrived", code="forum_unknown")
    if forum.from_org != sender:
        raise Reject("the forum belongs to another organisation", code="foreign_record")
    if forum.ended_at is not None:
        raise Reject("this organisation is no longer a member of the forum", code="not_a_member")
    consultation = session.get(ReceivedConsultation, event.consultation_id)
    if consultation is not None and consultation.from_org != sender:
        raise Reject("the consultation id belongs to another organisation's consultation", code="foreign_record")
    if consultation is None:
        session.add(ReceivedConsultation(id=event.consultation_id, from_org=sender, age_band=event.age_band,
                                         wheel_areas=list(event.wheel_areas), question=event.question))
    if session.get(ReceivedAgendaItem, event.agenda_item_id) is None:
        session.add(ReceivedAgendaItem(id=event.agenda_item_id, forum_id=forum.id, from_org=sender,
                                       occurrence_date=event.occurrence_date, consultation_id=event.consultation_id))


def answer_consultation(session: Session, *, settings: ServiceSettings, principal: Principal, consultation_id: str,
                        data: AnswerCreate) -> AnswerPublic:
    """Answer a consultation another organisation asked; the answer is screened and travels back to it.

    Each answer is a record of its own: a second answer adds to the first, never rewrites it.
    """
    consultation = session.get(ReceivedConsultation, consultation_id)
    if consultation is None:
        raise NotFound("no such consultation received")
    answer = GivenAnswer(id=str(uuid.uuid4()), consultation_id=consultation.id, to_org=consultation.from_org,
                         kind=data.kind, text=data.text, answered_by=principal.user)
    session.add(answer)
    session.flush()
    send_anonymous(session, ConsultationAnswered(
        answer_id=answer.id, consultation_id=consultation.id, answering_org=settings.org,
        asking_org=consultation.from_org, kind=data.kind.value, text=data.text, answered_at=as_utc(answer.answered_at),
    ), settings=settings, to_org=consultation.from_org, subject=consultation.id)
    audit(session, principal, "consultation.answer", purpose=CONSULTATION_PURPOSE, record_id=answer.id)
    return AnswerPublic(id=answer.id, consultation_id=consultation.id, org=settings.org, kind=answer.kind,
                        text=answer.text, answered_at=as_utc(answer.answered_at))


def asked_orgs(session: Session, consultation: Consultation) -> list[str]:
    """The organisations a consultation was put to: those invited, and the forum members when it went on an agenda."""
    members = session.exec(select(AgendaItem.put_to).where(AgendaItem.consultation_id == consultation.id)
                           .order_by(col(AgendaItem.placed_at), col(AgendaItem.id))).all()
    return list(dict.fromkeys([*consultation.invited_orgs, *(org for orgs in members for org in orgs)]))


def receive_answer(session: Session, *, envelope: Envelope, event: ConsultationAnswered) -> None:
    """Store an answer to one of this organisation's consultations, from an organisation it asked."""
    consultation = session.get(Consultation, event.consultation_id)
    if consultation is None:
        raise Reject("answers no consultation of this organisation", code="unknown_record")
    if envelope.source_org not in asked_orgs(session, consultation):
        raise Reject("the consultation was not put to the answering organisation", code="not_asked")
    try:
        kind = AnswerKind(event.kind)
    except ValueError:
        raise Reject("unknown answer kind", code="invalid_message") from None
    existing = session.get(ReceivedAnswer, event.answer_id)
    if existing is not None:
        if existing.from_org != envelope.source_org or existing.consultation_id != consultation.id:
            raise Reject("the answer id belongs to another answer", code="foreign_record")
        return
    session.add(ReceivedAnswer(id=event.answer_id, consultation_id=consultation.id, from_org=envelope.source_org,
                               kind=kind, text=event.text, answered_at=as_utc(event.answered_at)))


def get_consultation(session: Session, *, principal: Principal, consultation_id: str) -> ConsultationDetail:
    """One of this organisation's consultations with its answers; one naming a case only for those on the case."""
    consultation = session.get(Consultation, consultation_id)
    if consultation is None:
        raise NotFound("no such consultation")
    if consultation.case_id is not None:
        # The link to a case is the organisation's own knowledge of who the child is.
        access = policy.check(principal, policy.Action.CASE_READ, policy.Facts(
            case=policy.case_facts(session, get_case(session, consultation.case_id)), record_id=consultation.id))
        policy.audit_access(session, access, "consultation.read", purpose=CONSULTATION_PURPOSE)
    else:
        audit(session, principal, "consultation.read", purpose=CONSULTATION_PURPOSE, record_id=consultation.id)
    answers = session.exec(select(ReceivedAnswer).where(ReceivedAnswer.consultation_id == consultation.id)
                           .order_by(col(ReceivedAnswer.answered_at), col(ReceivedAnswer.id))).all()
    return ConsultationDetail(
        **ConsultationPublic.model_validate(consultation, from_attributes=True).model_dump(),
        asked_orgs=asked_orgs(session, consultation),
        answers=[AnswerPublic(id=a.id, consultation_id=a.consultation_id, org=a.from_org, kind=a.kind, text=a.text,
                              answered_at=as_utc(a.answered_at)) for a in answers])
