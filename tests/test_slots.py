"""mixer="slots": field inputs read as a table's row (each key its own slot, an MLP over them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlm import ModelConfig, RegressionLM, TrainConfig
from rlm.inputs.vocab import VocabConfig
from rlm.io import Example
from rlm.nn.config import LoraConfig, preset
from rlm.nn.heads import SlotHead
from rlm.selection import model_label

QUICK = TrainConfig(max_steps=60, batch_size=16, lr=3e-3, progress=False, seed=0)
CONFIGS = [{"size": s, "mode": ["a", "b"][s % 2], "cache": s % 5} for s in range(1, 61)]
TARGETS = [float(x["size"] * (3 if x["mode"] == "a" else 1) + x["cache"]) for x in CONFIGS]
ROWS = [Example(x=x, y={"t": y}) for x, y in zip(CONFIGS, TARGETS, strict=True)]


def _slots(members: int = 2, head: str = "mse") -> RegressionLM:
    model = preset("tiny", head=head, members=members, mixer="slots")
    return RegressionLM(model=model, targets=["t"], train=QUICK)  # numbers="auto": as values


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mixer": "pool"}, "choose 'attention' or 'slots'"),
        ({"mixer": "slots"}, "feeds a value head"),  # the digit decoder
        ({"mixer": "slots", "head": "mse", "exits": (1,), "enc_layers": 2}, "no encoder blocks"),
        ({"mixer": "slots", "head": "mse", "share_layers": True}, "no encoder blocks"),
    ],
)
def test_slots_config_errors(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig(**options)


@pytest.mark.parametrize("numbers", ["digits", "value"])  # text with number values has keys too
def test_slots_need_field_inputs(numbers) -> None:
    texts = [f"size {s}" for s in range(40)]
    model = RegressionLM(
        model=preset("tiny", head="mse", mixer="slots"),
        train=QUICK,
        vocab=VocabConfig(numbers=numbers),
    )
    with pytest.raises(ValueError, match="reads field inputs"):
        model.fit(texts, [float(s) for s in range(40)])


def test_an_unseen_key_adds_nothing_through_its_untrained_slot() -> None:
    model = _slots(members=1).fit(ROWS[:48], valid=ROWS[48:])
    xs = CONFIGS[48:]
    with pytest.warns(UserWarning):
        unseen = model.predict([{**x, "never_seen": 7} for x in xs], samples=0)
    np.testing.assert_allclose(unseen, model.predict(xs, samples=0), rtol=1e-6)
    assert model_label(model.model_config) == "mse-slots"
    with pytest.raises(ValueError, match="no encoder layers to exit from"):
        model.set_early_exit(0.01)


def test_slots_fit_predict_save_load(tmp_path) -> None:
    model = _slots().fit(ROWS[:48], valid=ROWS[48:])
    assert not model.net.encoder  # type: ignore[union-attr]  # no attention blocks at all
    assert isinstance(model.net.value_head, SlotHead)  # type: ignore[union-attr]
    assert model.fields.config.numbers == "value"  # type: ignore[union-attr]  # "auto", resolved
    assert model.field_config.numbers == "auto"  # the user's option is kept for a refit
    # the members' copies are not encoder passes: a batch is cut by rows x length only
    assert model.net.copies_per_position == 1  # type: ignore[union-attr]
    xs = CONFIGS[48:]
    pred = model.predict(xs, samples=0)
    assert np.isfinite(pred).all() and pred.shape == (12, 1)
    loaded = RegressionLM.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(xs, samples=0), pred, rtol=1e-6)
    assert loaded.model_config.mixer == "slots"
    with pytest.raises(ValueError, match="no attention heads"):
        model.prune(ROWS[:48], amount=0.5)


def test_a_key_lands_in_its_own_slot_whatever_its_position() -> None:
    torch.manual_seed(0)
    head = SlotHead(d=8, n_keys=5, objectives=1, gaussian=False, members=1).eval()
    x = torch.randn(1, 3, 8)  # (B, T, D)
    keys, pad = torch.tensor([[2, 3, 4]]), torch.zeros(1, 3, dtype=torch.bool)
    flipped = head(x.flip(1), pad, keys.flip(1))  # the same fields in another order
    torch.testing.assert_close(head(x, pad, keys), flipped)
    padded = head(torch.cat([x, torch.randn(1, 1, 8)], 1), torch.tensor([[0, 0, 0, 1]]).bool(),
                  torch.tensor([[2, 3, 4, 0]]))  # fmt: skip
    torch.testing.assert_close(head(x, pad, keys), padded)  # padding adds nothing


def test_grown_keys_start_at_zero_weight_and_keep_the_function() -> None:
    torch.manual_seed(0)
    head = SlotHead(d=8, n_keys=4, objectives=1, gaussian=False, members=2).eval()
    x, keys, pad = torch.randn(4, 3, 8), torch.tensor([[1, 2, 3]] * 4), torch.zeros(4, 3).bool()
    before = head(x, pad, keys)
    head.grow_keys(6)
    torch.testing.assert_close(head(x, pad, keys), before)
    new = torch.tensor([[1, 2, 5]] * 4)  # a new key's field now reaches its (zero) slot
    assert head.mlp[0].in_features == 6 * head.slot.out_features
    torch.testing.assert_close(head(x, pad, new), head(x[:, :2], pad[:, :2], keys[:, :2]))


def test_finetune_a_slots_model_on_a_new_key() -> None:
    model = _slots(members=1).fit(ROWS[:48], valid=ROWS[48:])
    extra = [Example(x={**r.x, "threads": i % 3}, y=r.y) for i, r in enumerate(ROWS)]
    tuned = model.finetune(extra[:48], valid=extra[48:], train=QUICK)
    assert tuned.net.value_head.n_keys > model.net.value_head.n_keys  # type: ignore[union-attr]
    assert np.isfinite(tuned.predict([e.x for e in extra[48:]], samples=0)).all()
    with pytest.raises(ValueError, match="without lora"):
        model.finetune(extra[:48], valid=extra[48:], train=QUICK, lora=LoraConfig())
