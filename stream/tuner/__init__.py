"""The tuner process (``streamrec tuner``): search the whole engine config on ``events``, announce winners.

A sibling of ``stream.worker`` and ``stream.trainer``: it meets the workers only on the wire
(``stream.wire.config_updates``, the ``config-updates`` topic).
"""
