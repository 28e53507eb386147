"""Built-in channel adapters, each registered under ``switchboard.channels`` like any plugin."""
