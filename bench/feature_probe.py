"""What a fine-tuned backbone's features still tell apart on val, against the weights it started
from: balanced logistic-regression probes, trained on train's features, scored on val's.

    python bench/feature_probe.py bundles/pretrained --data ../shared/data/isic8_clean \\
        --pair melanoma nevus

For the bundle's own backbone (as fine-tuned) and for the same network with its packaged
pretrained weights, at each probe strength C (smaller: more regularised): the probe over all
classes, as val balanced accuracy, and for ``--pair`` a probe over those two classes alone, as
val AUC and each class's recall. ``--train-ids-below N`` trains the pair's probe only on train
images whose file names end in a number below N (ISIC ids: ``ISIC_0000123``), to probe within
one image source.
Where the fine-tuned features separate a pair worse than the starting ones, fine-tuning lost
(or never found on train) what tells that pair apart on val.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CS = (0.01, 0.1, 1.0)


def probe(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, c: float
) -> np.ndarray:
    """Val class probabilities of a class-balanced logistic regression fitted on train."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit(scaler.transform(x_train), y_train)
    return np.asarray(model.predict_proba(scaler.transform(x_val)))


def pair_scores(probs: np.ndarray, y_val: np.ndarray) -> tuple[float, float, float]:
    """AUC of a two-class probe's class-1 probability, and each class's recall at 0.5."""
    from sklearn.metrics import roc_auc_score

    positive = probs[:, 1]
    return (
        float(roc_auc_score(y_val, positive)),
        float((positive[y_val == 0] < 0.5).mean()),
        float((positive[y_val == 1] >= 0.5).mean()),
    )


def features(
    backbone: object, images: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """The backbone's pooled features of ``(N, H, W, 3)`` uint8 images, in batches."""
    import torch

    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 64):
            batch = torch.from_numpy(images[start : start + 64]).permute(0, 3, 1, 2).float() / 255
            out.append(backbone((batch - m) / s).numpy())  # type: ignore[operator]
    return np.concatenate(out)


def _id_below(path: Path, limit: int) -> bool:
    number = re.search(r"(\d+)$", path.stem)
    return number is not None and int(number.group(1)) < limit


def main() -> None:
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from skinsearch.data import decode_dataset, scan_dataset
    from skinsearch.models import build_model, hparams_class
    from skinsearch.models._registry import read_weights, weights_source
    from skinsearch.results.predict import load_bundle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle of a pretrained backbone")
    parser.add_argument("--data", type=Path, required=True, help="train/ and val/ class folders")
    parser.add_argument("--pair", nargs=2, metavar="CLASS", default=None)
    parser.add_argument("--train-ids-below", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    bundle = load_bundle(args.bundle)
    model, config, prep = bundle.model, bundle.config, bundle.preprocessing
    if not hasattr(model, "backbone"):
        raise SystemExit(f"{args.bundle}: {config.model} has no pretrained backbone to probe")
    hp = hparams_class(config.model).model_validate(config.hparams)
    source = weights_source(config.model, hp)
    if source is None:
        raise SystemExit(f"{args.bundle}: trained from random weights; nothing to compare with")
    size, classes = prep.resize[0], config.class_names
    start = build_model(config.model, hp, size, len(classes), read_weights(config.model, source))

    files = scan_dataset(args.data)
    if files.class_names != classes:
        raise SystemExit(
            f"{args.data}: classes {files.class_names} are not the bundle's {classes}; "
            "give the data set the bundle was trained on"
        )
    limit = args.train_ids_below
    in_source = np.array([limit is None or _id_below(p, limit) for p, _ in files.train])

    data = decode_dataset(files, [size], prep.colour_constancy)[size]
    if len(data.y_train) != len(files.train):
        raise SystemExit(f"{args.data}: some train images could not be read (see the warning)")
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    print(
        f"{args.bundle} ({config.model}, {size} px) on {args.data}: {len(y_train)} train, {len(y_val)} val images"
    )
    if args.pair:
        unknown = [name for name in args.pair if name not in classes]
        if unknown:
            raise SystemExit(
                f"--pair: {unknown[0]!r} is not a class of the bundle ({', '.join(classes)})"
            )
        a, b = (classes.index(name) for name in args.pair)
        pair_train = np.isin(y_train, [a, b]) & in_source
        pair_val = np.isin(y_val, [a, b])
        counts = [int((y_train[pair_train] == k).sum()) for k in (a, b)]
        print(
            f"pair: {args.pair[0]} (0) against {args.pair[1]} (1), train {counts[0]}/{counts[1]}, val {int((y_val == a).sum())}/{int((y_val == b).sum())}"
        )
    print("| features | C | all classes: val balanced acc | pair: val AUC | recall 0 | recall 1 |")
    print("|---|---|---|---|---|---|")
    for name, network in [("fine-tuned (bundle)", model), (f"starting ({source})", start.eval())]:
        f_train = features(network.backbone, x_train, prep.mean, prep.std)
        f_val = features(network.backbone, x_val, prep.mean, prep.std)
        for c in CS:
            probs = probe(f_train, y_train, f_val, y_val, c)
            bacc = balanced_accuracy_score(y_val, np.unique(y_train)[probs.argmax(1)])
            pair = "| | | |"
            if args.pair:
                pair_probs = probe(
                    f_train[pair_train],
                    y_train[pair_train] == b,
                    f_val[pair_val],
                    y_val[pair_val] == b,
                    c,
                )
                auc, recall_a, recall_b = pair_scores(pair_probs, y_val[pair_val] == b)
                pair = f"{auc:.3f} | {recall_a:.2f} | {recall_b:.2f} |"
            print(f"| {name} | {c:g} | {bacc:.3f} | {pair}", flush=True)


if __name__ == "__main__":
    main()
