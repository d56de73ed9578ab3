"""Pure core: bytes and timestamps in, frozen dataclasses out. No I/O of any kind here."""
