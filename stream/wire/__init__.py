"""The message contracts: what every topic carries, as bytes, and nothing else.

The lowest layer of ``stream`` (``stream.errors`` and ``stream.observability`` aside, which
import nothing of ours): no connection, no settings, no broker (the one piece of a client
library it uses is kafka-python's murmur2, for the partitioner); ``stream.settings`` builds
on it (``Settings.topic_specs``). ``topics`` declares topics, ``schema`` encodes and decodes
the data topics (events, requests, lists, dead letters), ``announcements`` the control topics
(``model-updates``, ``tuning``), ``partitioner`` where a key lands and ``messages`` the
envelopes (a message read, a message to publish) the layers above pass around.
"""
