"""Slack: Events API (or Socket Mode) in, streaming answers with feedback and retry buttons out."""

from channels.slack.channel import SlackChannel

__all__ = ["SlackChannel"]
