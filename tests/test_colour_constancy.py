"""``data.colour_constancy: shades_of_gray``: what it does to an image, and that decoding for a
search and ``predict`` on an exported bundle both apply it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from skinsearch.config.hparams import HParams
from skinsearch.config.spec import DataSpec
from skinsearch.data import decode_dataset, load_image, scan_dataset
from skinsearch.data.decode import (
    COLOUR_CONSTANCY,
    SHADES_OF_GRAY_P,
    fold_splits,
    shades_of_gray,
)
from skinsearch.errors import ResultsError
from skinsearch.models import build_model
from skinsearch.results.predict import predict


def scene(seed: int = 0, size: int = 32) -> np.ndarray:
    """A textured, roughly neutral image in 40..200, as float RGB."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(40, 200, (size, size, 1))
    return grey + rng.uniform(-10, 10, (size, size, 3))


def light_of(image: np.ndarray) -> np.ndarray:
    pixels = image.reshape(-1, 3).astype(np.float64)
    light = np.power(np.power(pixels, SHADES_OF_GRAY_P).mean(0), 1 / SHADES_OF_GRAY_P)
    return light / light.mean()


def test_a_colour_cast_becomes_neutral_and_two_casts_of_one_scene_agree() -> None:
    base = scene()
    warm = np.rint(base * (1.0, 0.8, 0.6)).astype(np.uint8)
    cold = np.rint(base * (0.6, 0.8, 1.0)).astype(np.uint8)
    assert np.abs(light_of(warm) - 1).max() > 0.2
    for cast in (warm, cold):
        assert np.allclose(light_of(shades_of_gray(cast)), 1.0, atol=0.01)
    before = np.abs(warm.astype(float) - cold).mean()
    after = np.abs(shades_of_gray(warm).astype(float) - shades_of_gray(cold)).mean()
    assert before > 25 and after < 3, (before, after)


def test_grey_and_black_images_are_left_as_they_are() -> None:
    grey = np.rint(np.repeat(scene()[..., :1], 3, axis=2)).astype(np.uint8)
    assert np.abs(shades_of_gray(grey).astype(int) - grey).max() <= 1
    black = np.zeros((8, 8, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black), black)


def test_the_spec_offers_every_correction_decoding_knows() -> None:
    offered = get_args(DataSpec.model_fields["colour_constancy"].annotation)
    assert set(offered) == set(COLOUR_CONSTANCY)


def test_decoding_applies_it_to_every_image_and_records_it(tiny_images: Path) -> None:
    files = scan_dataset(tiny_images)
    plain = decode_dataset(files, [16])[16]
    corrected = decode_dataset(files, [16], "shades_of_gray")[16]
    for x_plain, x_corrected in (
        (plain.x_train, corrected.x_train),
        (plain.x_val, corrected.x_val),
    ):
        assert np.array_equal(x_corrected, np.stack([shades_of_gray(a) for a in x_plain]))
    assert not np.array_equal(plain.x_train, corrected.x_train)
    assert plain.preprocessing["colour_constancy"] == "none"
    assert corrected.preprocessing["colour_constancy"] == "shades_of_gray"
    # a confirmation over folds exports bundles that say so too
    for fold in fold_splits(corrected, 2, seed=0):
        assert fold.preprocessing["colour_constancy"] == "shades_of_gray"


def test_predict_corrects_images_as_the_search_did(tmp_path: Path) -> None:
    image_file = tmp_path / "warm.png"
    Image.fromarray(np.rint(scene(size=40) * (1.0, 0.8, 0.6)).astype(np.uint8)).save(image_file)
    hp = HParams(hidden_sizes=[16], input_size=16, seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", hp, 16, 3).eval()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    torch.save(model.state_dict(), bundle / "model_state.pt")
    config = {"model": "mlp", "hparams": hp.model_dump(mode="json"), "class_names": list("abc")}
    (bundle / "config.yaml").write_text(yaml.safe_dump(config))
    (bundle / "classes.json").write_text(json.dumps(config["class_names"]))
    prep = {"resize": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3}

    def expected(colour_constancy: str) -> np.ndarray:
        array = load_image(image_file, [16], colour_constancy)[0]
        batch = torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            return torch.softmax(model((batch - 0.5) / 0.25), 1)[0].numpy()

    for setting in ("shades_of_gray", "none"):
        (bundle / "preprocessing.json").write_text(
            json.dumps({**prep, "colour_constancy": setting})
        )
        (got,) = predict(bundle, [image_file])
        assert list(got.probabilities.values()) == pytest.approx(expected(setting), abs=1e-6)
    assert not np.allclose(expected("shades_of_gray"), expected("none"), atol=1e-4)

    # a bundle asking for a correction this version does not know is refused, not misread
    (bundle / "preprocessing.json").write_text(json.dumps({**prep, "colour_constancy": "retinex"}))
    with pytest.raises(ResultsError, match=r"unknown colour_constancy 'retinex' \(this skinsearch"):
        predict(bundle, [image_file])
