"""Packet sources: the edges that read captures or sockets and hand raw frames to the core."""
