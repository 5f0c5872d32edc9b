"""Regenerate the golden field-input checkpoints in tests/data/ (tests/test_golden.py).

    python tools/make_golden_checkpoints.py

Each is a tiny seeded model fitted for a few epochs on synthetic configurations with every kind
of field value (few-valued and many-valued numbers, strings, booleans, null, a nested mapping,
a list), saved as ``RegressionLM.save`` writes it, beside ``expected.json``: its predictions
for inputs that include an unseen number, an unseen string and an unseen key. A later version
of rlm must load these files and predict the same: a change that breaks that breaks every
model users have saved. Regenerate only for a deliberate format change, and say so.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data"
SEED = 0
SAMPLES = 8
EPOCHS = 30
# name -> (preset overrides, FieldConfig.numbers): the two families model="auto" fits
GOLDEN = {
    "checkpoint_fields_both": ({"head": "digits"}, "both"),
    "checkpoint_fields_slots": ({"head": "mse", "mixer": "slots", "members": 2}, "value"),
}
# fmt: off
PREDICT_INPUTS: list[dict[str, Any]] = [
    {"threads": 4, "ratio": 0.5, "mode": "fast", "cache": True, "opt": {"level": 2},
     "note": None, "dims": [3, 1]},
    {"threads": 3, "ratio": 7.25, "mode": "tpcc-1000w", "cache": False, "opt": {"level": 1},
     "note": "Xeon 8380 @ 2.30GHz", "dims": [2, 2]},  # unseen: a number, two strings
    {"threads": 8, "ratio": 1e-3, "mode": "slow", "cache": True, "opt": {"level": 3},
     "note": None, "dims": [1, 4], "new_key": 1},  # an unseen key: a warning
]
# fmt: on


def rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        x = {
            "threads": rng.choice([1, 2, 4, 8]),
            "ratio": round(rng.uniform(0.01, 5.0), 3),
            "mode": rng.choice(["fast", "slow", "balanced"]),
            "cache": rng.random() < 0.5,
            "opt": {"level": rng.randint(0, 3)},
            "note": rng.choice([None, "ssd", "hdd"]),
            "dims": [rng.randint(1, 4), rng.randint(1, 4)],
        }
        y = 10.0 * x["ratio"] / x["threads"] * (0.5 if x["cache"] else 1.0) + x["opt"]["level"]
        out.append({"x": x, "y": {"latency_ms": round(y, 4)}, "id": str(i)})
    return out


def main() -> None:
    import warnings

    from rlm import RegressionLM, TrainConfig
    from rlm.inputs.fields import FieldConfig
    from rlm.io import Example
    from rlm.nn.config import preset

    rng = random.Random(SEED)
    train = [Example(x=r["x"], y=r["y"], id=r["id"]) for r in rows(96, rng)]
    valid = [Example(x=r["x"], y=r["y"], id=r["id"]) for r in rows(24, rng)]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    for name, (overrides, numbers) in GOLDEN.items():
        model = RegressionLM(
            model=preset("tiny", **overrides),
            fields=FieldConfig(numbers=numbers),
            targets=["latency_ms"],
            train=TrainConfig(max_epochs=EPOCHS, batch_size=16, seed=SEED, progress=False),
        )
        model.fit(train, valid=valid)
        d = OUT / name
        shutil.rmtree(d, ignore_errors=True)
        model.save(d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unseen key's warning
            got = model.predict(PREDICT_INPUTS, samples=SAMPLES, seed=SEED)
            lower, upper = model.predict_interval(PREDICT_INPUTS, samples=SAMPLES, seed=SEED)
        expected = {
            "made_by": f"rlm at commit {commit}: tools/make_golden_checkpoints.py, preset "
            f"tiny with {overrides}, FieldConfig(numbers={numbers!r}), {EPOCHS} epochs, seed {SEED}",
            "inputs": PREDICT_INPUTS,
            "samples": SAMPLES,
            "seed": SEED,
            "predict": got.tolist(),
            "lower": lower.tolist(),
            "upper": upper.tolist(),
        }
        (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        print(f"wrote {d}")


if __name__ == "__main__":
    main()
