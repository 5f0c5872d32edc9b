"""Golden checkpoints: models saved by an earlier rlm load and predict exactly as they did.

The files in ``tests/data/checkpoint_fields_*`` were written by
``tools/make_golden_checkpoints.py`` (field inputs: the digit decoder reading numbers as tokens
and values, and the slot mixer's value ensemble reading them as values). A change that fails
here changes what users' saved models predict: regenerate only for a deliberate format
change, and say so in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlm import RegressionLM

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = ("checkpoint_fields_both", "checkpoint_fields_slots")


@pytest.mark.parametrize("name", GOLDEN)
def test_field_checkpoint_loads_and_predicts_as_saved(name: str) -> None:
    expected = json.loads((DATA / name / "expected.json").read_text())
    model = RegressionLM.load(DATA / name)
    x, n, seed = expected["inputs"], expected["samples"], expected["seed"]
    with pytest.warns(UserWarning, match="new_key"):  # the third input's unseen key
        got = model.predict(x, samples=n, seed=seed)
    with pytest.warns(UserWarning, match="new_key"):
        lower, upper = model.predict_interval(x, samples=n, seed=seed)
    for value, key in ((got, "predict"), (lower, "lower"), (upper, "upper")):
        np.testing.assert_allclose(value, np.array(expected[key]), rtol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    ("name", "numbers", "mixer"),
    [
        ("checkpoint_fields_both", "both", "attention"),
        ("checkpoint_fields_slots", "value", "slots"),
    ],
)
def test_field_checkpoint_keeps_how_it_reads_numbers(name: str, numbers: str, mixer: str) -> None:
    model = RegressionLM.load(DATA / name)
    assert model.fields is not None
    assert model.fields.config.numbers == numbers
    assert model.model_config.mixer == mixer
