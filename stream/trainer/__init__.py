"""The streaming trainer process: refresh the encoder from ``events``, announce each version.

A sibling of ``stream.worker``: neither imports the other; they meet only on the
wire (``stream.wire.announcements``) and in the shared checkpoint directory.
"""
