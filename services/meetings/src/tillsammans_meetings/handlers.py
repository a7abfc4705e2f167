"""Meetings' NATS consumers: thin, call service.py."""

from __future__ import annotations

import asyncio

from sqlmodel import Session

from tillsammans_common.cases import keep_cases
from tillsammans_common.events import Envelope
from tillsammans_common.events.consent import ConsentWithdrawn
from tillsammans_common.events.intake import ConcernRaised
from tillsammans_common.events.mapping import MappingCompleted
from tillsammans_common.events.meetings import (
    AgendaItemPlaced,
    ConsultationAnswered,
    ConsultationRequested,
    ForumDefined,
    ForumMembershipEnded,
    InvitationReplied,
    InvitationSent,
    MeetingCancelled,
    MeetingRescheduled,
    SipItemStatusReported,
    SipPlanShared,
)
from tillsammans_common.messaging.consent_replica import keep_replica
from tillsammans_common.messaging.consumer import Reject, consume
from tillsammans_common.service_app import Infrastructure
from tillsammans_meetings import forums, service, sip


def register(infra: Infrastructure) -> None:
    """Subscribe meetings' consumers: invitations, consultations, SIPs and item reports from other organisations,
    and consents."""
    settings = infra.settings

    def on_invitation(session: Session, envelope: Envelope, event: InvitationSent) -> None:
        # The consumer checked the consent for event.child_key; make sure that key is this child's,
        # so a consent for one child can never carry another child's identity.
        if not service.identity_matches_key(event, pair_secret=settings.pair_secret(envelope.source_org)):
            raise Reject("child key does not match the child in the invitation")
        service.receive_invitation(session, settings=settings, envelope=envelope, event=event)

    def on_consultation(session: Session, envelope: Envelope, event: ConsultationRequested) -> None:
        service.receive_consultation(session, envelope=envelope, event=event)

    def on_reply(session: Session, envelope: Envelope, event: InvitationReplied) -> None:
        service.apply_reply(session, envelope=envelope, event=event)

    def on_change(session: Session, envelope: Envelope, event: MeetingRescheduled | MeetingCancelled) -> None:
        service.apply_meeting_change(session, envelope=envelope, event=event)

    def on_withdrawn(session: Session, event: ConsentWithdrawn) -> None:
        service.apply_withdrawal(session, settings=settings, event=event)

    consume(infra.broker, infra.engine, settings, event=InvitationSent, handler=on_invitation,
            durable="invitations-received", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=ConsultationRequested, handler=on_consultation,
            durable="consultations-received", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=InvitationReplied, handler=on_reply,
            durable="invitation-replies", from_other_orgs=True)
    # Reschedules and cancels come on two consumers and may be applied in any order: the inviter's
    # sequence decides, so a stale one is ignored and the latest state wins.
    consume(infra.broker, infra.engine, settings, event=MeetingRescheduled, handler=on_change,
            durable="meetings-rescheduled", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=MeetingCancelled, handler=on_change,
            durable="meetings-cancelled", from_other_orgs=True)
    def on_concern(session: Session, _: Envelope, event: ConcernRaised) -> None:
        service.apply_concern_raised(session, event=event)

    consume(infra.broker, infra.engine, settings, event=ConcernRaised, handler=on_concern, durable="child-records")

    def on_mapping_completed(session: Session, _: Envelope, event: MappingCompleted) -> None:
        service.keep_completed_mapping(session, event=event)

    consume(infra.broker, infra.engine, settings, event=MappingCompleted, handler=on_mapping_completed,
            durable="completed-mappings")

    def on_plan(session: Session, envelope: Envelope, event: SipPlanShared) -> None:
        # As for an invitation: the consent was checked for event.child_key, which must be this child's.
        if not sip.identity_matches_key(event, pair_secret=settings.pair_secret(envelope.source_org)):
            raise Reject("child key does not match the child in the plan", code="key_mismatch")
        sip.receive_plan(session, envelope=envelope, event=event)

    def on_item_status(session: Session, envelope: Envelope, event: SipItemStatusReported) -> None:
        sip.apply_reported_status(session, settings=settings, envelope=envelope, event=event,
                                  participating=lambda meeting: service.participants(
                                      session, settings=settings, meeting=meeting))

    sharing: set[asyncio.Task[None]] = set()

    def share_again() -> None:
        # The holder shares the changed plan once the report is committed, under consent decided now;
        # a pass that fails is retried by the follow-up scheduler (the plan stays pending in the database).
        task = asyncio.get_running_loop().create_task(sip.share_plans(
            engine=infra.engine, connection=infra.broker.connection, settings=settings, principal=None,
            participating=lambda session, meeting: service.participants(session, settings=settings,
                                                                        meeting=meeting)))
        sharing.add(task)
        task.add_done_callback(sharing.discard)

    consume(infra.broker, infra.engine, settings, event=SipPlanShared, handler=on_plan, durable="sip-plans-received",
            from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=SipItemStatusReported, handler=on_item_status,
            durable="sip-item-status-received", from_other_orgs=True, after_commit=share_again)

    # Forums, their agendas and the answers to consultations (decision 0027): anonymous, screened by the sender.
    consume(infra.broker, infra.engine, settings, event=ForumDefined, handler=on_forum_defined,
            durable="forums-received", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=ForumMembershipEnded, handler=on_membership_ended,
            durable="forum-memberships-ended", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=AgendaItemPlaced, handler=on_agenda_item,
            durable="agenda-items-received", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=ConsultationAnswered, handler=on_answer,
            durable="consultation-answers", from_other_orgs=True)
    keep_replica(infra, on_withdrawn=on_withdrawn)
    keep_cases(infra)


def on_forum_defined(session: Session, envelope: Envelope, event: ForumDefined) -> None:
    """A forum of another organisation's, with this one as a member."""
    forums.receive_forum(session, envelope=envelope, event=event)


def on_membership_ended(session: Session, envelope: Envelope, event: ForumMembershipEnded) -> None:
    """The owner of a forum took this organisation out of it."""
    forums.receive_membership_ended(session, envelope=envelope, event=event)


def on_agenda_item(session: Session, envelope: Envelope, event: AgendaItemPlaced) -> None:
    """An anonymous consultation on the agenda of a forum this organisation is a member of."""
    forums.receive_agenda_item(session, envelope=envelope, event=event)


def on_answer(session: Session, envelope: Envelope, event: ConsultationAnswered) -> None:
    """An answer to one of this organisation's anonymous consultations."""
    forums.receive_answer(session, envelope=envelope, event=event)
