"""The trainer process's refresh (no Kafka): warm-started versions are written and announced, a version
worse than the served one on the newest events is neither."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import Settings
from tests.test_models.conftest import make_interactions

torch = pytest.importorskip("torch")


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        pass

    def close(self, *args: object, **kwargs: object) -> None:
        pass


@pytest.fixture
def trainer(tmp_path: Path):
    from stream.trainer.trainer import StreamTrainer

    torch.set_num_threads(1)
    settings = Settings.of(trainer_dir=str(tmp_path / "ckpt"), trainer_size="tiny", trainer_epochs=2,
                           trainer_device="cpu")
    trainer = StreamTrainer(settings)
    trainer._producer = FakeProducer()
    return trainer


def feed(trainer, users: list[str], items: list[str]) -> None:
    for user, item in zip(users, items):
        trainer.store.add(user, item)
    trainer.new_events += len(users)


def test_each_refresh_warm_starts_from_the_served_version_and_announces_it(trainer) -> None:
    from models import latest_checkpoint, load_checkpoint

    users, items = make_interactions(n_users=30, n_items=60, length=20)
    half = len(users) // 2
    feed(trainer, users[:half], items[:half])
    first = trainer.refresh()
    feed(trainer, users[half:] + ["u0"], items[half:] + ["brand-new"])
    second = trainer.refresh()
    assert first["version"] == 1 and second["version"] == 2 and len(trainer._producer.sent) == 2
    checkpoint = load_checkpoint(latest_checkpoint(trainer.settings.encoder.trainer_dir))
    assert checkpoint.items == trainer.served.items and checkpoint.version == 2
    assert "brand-new" in checkpoint.items  # the vocabulary grew
    assert second["metrics"]["previous_hr"] is not None


def test_a_version_kept_from_serving_is_neither_written_nor_announced(trainer, monkeypatch) -> None:
    import models.refresh as refresh_module
    from models.checkpoint import list_versions

    users, items = make_interactions(n_users=30, n_items=60, length=20)
    feed(trainer, users, items)
    assert trainer.refresh() is not None
    served = trainer.served
    monkeypatch.setattr(refresh_module, "holdout_hr", lambda model, *a, **kw: 0.5 if model is served.model else 0.1)
    feed(trainer, users[:200], items[:200])
    assert trainer.refresh() is None
    assert trainer.served is served and trainer.rejected == 1
    assert len(trainer._producer.sent) == 1
    assert [v for v, _ in list_versions(trainer.settings.encoder.trainer_dir)] == [1]
