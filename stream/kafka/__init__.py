"""Everything that talks to Kafka as a client or runs a broker.

kafka-python clients (``clients``), the batched aiokafka sender the worker publishes
through (``sender``), security settings for both libraries (``security``), the
embedded Tansu broker (``broker``), the Faust transport subclasses (``transport``)
and the record-batch guard (``batch_guard``). Imports ``stream.wire`` and
``stream.settings`` only; nothing here knows what a worker or a trainer does.
"""
