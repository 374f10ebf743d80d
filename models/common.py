"""Enumerations shared by every contract."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    WAHA = "waha"
    WHATSAPP = "whatsapp"  # Meta WhatsApp Cloud API
    MESSENGER = "messenger"
    CHATWOOT = "chatwoot"
    EMAIL = "email"


class Role(StrEnum):
    LEAD = "lead"
    AI = "ai"
    HUMAN = "human"  # an agent or operator writing as the business
    SYSTEM = "system"


class Stage(StrEnum):
    INITIAL_OUTREACH = "initial_outreach"
    AWAITING_RESPONSE = "awaiting_response"
    QUALIFYING = "qualifying"
    OBJECTION_HANDLING = "objection_handling"
    SCHEDULING = "scheduling"
    NURTURE = "nurture"
    HUMAN_HANDOFF = "human_handoff"
    CLOSED = "closed"


class Intent(StrEnum):
    GREETING = "greeting"
    PRODUCT_INQUIRY = "product_inquiry"
    PRICING = "pricing"
    FINANCING = "financing"
    MEETING = "meeting"  # test drive, demo, call, visit
    TRADE_IN = "trade_in"
    COMPLAINT = "complaint"
    HUMAN_REQUEST = "human_request"
    NOT_INTERESTED = "not_interested"
    OTHER = "other"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class LeadQuality(StrEnum):
    HOT = "HOT"
    WARM = "WARM"
    LUKEWARM = "LUKEWARM"
    COLD = "COLD"


class ReplyPurpose(StrEnum):
    REPLY = "reply"
    OUTREACH = "outreach"
    FOLLOW_UP = "follow_up"
    ESCALATION_NOTICE = "escalation_notice"  # told to the lead when a human takes over
    HOLDING = "holding"  # no human answered in time
    SPECIALIST_ALERT = "specialist_alert"  # sent to the specialist, not the lead
