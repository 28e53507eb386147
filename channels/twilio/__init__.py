"""Twilio channels: SMS and WhatsApp (Programmable Messaging) and phone calls (Voice)."""

from channels.twilio.messaging import TwilioSmsChannel, TwilioWhatsAppChannel
from channels.twilio.voice import TwilioVoiceChannel

__all__ = ["TwilioSmsChannel", "TwilioVoiceChannel", "TwilioWhatsAppChannel"]
