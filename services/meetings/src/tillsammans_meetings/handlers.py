"""Meetings' NATS consumers: thin, call service.py."""

from __future__ import annotations

from sqlmodel import Session

from tillsammans_common.cases import keep_cases
from tillsammans_common.events import Envelope
from tillsammans_common.events.consent import ConsentWithdrawn
from tillsammans_common.events.intake import ConcernRaised
from tillsammans_common.events.meetings import (
    AgendaItemPlaced,
    ConsultationAnswered,
    ConsultationRequested,
    ForumDefined,
    ForumMembershipEnded,
    InvitationSent,
)
from tillsammans_common.messaging.consent_replica import keep_replica
from tillsammans_common.messaging.consumer import Reject, consume
from tillsammans_common.service_app import Infrastructure
from tillsammans_meetings import forums, service


def register(infra: Infrastructure) -> None:
    """Subscribe meetings' consumers: invitations and consultations from other organisations, and consents."""
    settings = infra.settings

    def on_invitation(session: Session, envelope: Envelope, event: InvitationSent) -> None:
        # The consumer checked the consent for event.child_key; make sure that key is this child's,
        # so a consent for one child can never carry another child's identity.
        if not service.identity_matches_key(event, pair_secret=settings.pair_secret(envelope.source_org)):
            raise Reject("child key does not match the child in the invitation")
        service.receive_invitation(session, settings=settings, envelope=envelope, event=event)

    def on_consultation(session: Session, envelope: Envelope, event: ConsultationRequested) -> None:
        service.receive_consultation(session, envelope=envelope, event=event)

    def on_withdrawn(session: Session, event: ConsentWithdrawn) -> None:
        service.apply_withdrawal(session, settings=settings, event=event)

    consume(infra.broker, infra.engine, settings, event=InvitationSent, handler=on_invitation,
            durable="invitations-received", from_other_orgs=True)
    consume(infra.broker, infra.engine, settings, event=ConsultationRequested, handler=on_consultation,
            durable="consultations-received", from_other_orgs=True)
    def on_concern(session: Session, _: Envelope, event: ConcernRaised) -> None:
        service.apply_concern_raised(session, event=event)

    consume(infra.broker, infra.engine, settings, event=ConcernRaised, handler=on_concern, durable="child-records")
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
