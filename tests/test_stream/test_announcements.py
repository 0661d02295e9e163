"""The control topics' one codec: model-updates announcements and tuning snapshots."""
from __future__ import annotations

import json

import pytest

from stream.wire.announcements import (
    ModelUpdate,
    decode_model_update,
    decode_tuning,
    encode_model_update,
    encode_tuning,
)


def test_an_announcement_round_trips_and_is_the_json_the_trainer_always_sent():
    update = ModelUpdate(3, "/ckpt/encoder-v00000003.pt", 1700000000.5, {"train_seconds": 1.2, "users": 40})
    raw = encode_model_update(update)
    assert raw == json.dumps({"version": 3, "path": "/ckpt/encoder-v00000003.pt", "ts": 1700000000.5,
                              "metrics": {"train_seconds": 1.2, "users": 40}}).encode()
    assert decode_model_update(raw) == update


def test_a_minimal_announcement_needs_only_version_and_path():
    assert encode_model_update(ModelUpdate(2, "/p")) == b'{"version": 2, "path": "/p"}'
    assert decode_model_update(b'{"path": "/p", "version": "2"}') == ModelUpdate(2, "/p")


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b'"text"', b'{"version": 1}',
                                 b'{"path": "/p"}', b'{"path": "/p", "version": "one"}',
                                 b'{"path": "/p", "version": [1]}',
                                 # a hostile producer: none of these may raise anything but ValueError
                                 b'{"path": "/p", "version": 1e999}', b'{"path": "/p", "version": NaN}',
                                 b'{"path": "/p", "version": true}', b'{"path": "/p", "version": 1.5}',
                                 b'{"path": 7, "version": 1}', b"[" * 100_000 + b"]" * 100_000,
                                 b'{"path": "/p", "version": 1}\xff\xfe'])
def test_anything_unreadable_is_a_value_error(raw):
    with pytest.raises(ValueError):
        decode_model_update(raw)


def test_a_tuning_snapshot_is_signed_with_the_worker_and_the_time():
    raw = encode_tuning({"step": 10, "policy": "thompson"}, worker="app:host:1", ts=5.0)
    assert decode_tuning(raw) == {"step": 10, "policy": "thompson", "worker": "app:host:1", "ts": 5.0}
