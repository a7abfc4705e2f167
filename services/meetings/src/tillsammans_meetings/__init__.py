"""Meetings: the samverkansmöte, invitations across organisations, coordinator, plan and follow-up."""
