"""Microsoft Teams through the Bot Framework protocol; see docs/setup/teams.md."""

from channels.teams.channel import TeamsChannel

__all__ = ["TeamsChannel"]
