"""Infrastructure adapters: the Chatbase v2 client and emulator, state stores, built-in tools."""
