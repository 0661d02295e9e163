"""One base exception for everything that touches Kafka, with the few kinds callers catch."""
from __future__ import annotations


class StreamError(Exception):
    """Base class for errors raised by ``stream``."""


class BrokerUnavailable(StreamError):
    """The broker could not be started or did not answer in time."""


class DataFormatError(StreamError):
    """A data file could not be read in the format asked for."""
