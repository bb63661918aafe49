"""The commands that use an exported bundle: ``predict`` classifies images, ``evaluate``
scores it on labelled images nobody tuned on (its search's held-out test split by default)."""

from __future__ import annotations

from pathlib import Path

import click

from skinsearch._cli_support import user_errors

_batch_size = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Images decoded and classified at a time.",
)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(path_type=Path),
    help="Also write every class's probability per image to this new CSV file.",
)
@_batch_size
@user_errors
def predict(bundle: Path, images: tuple[Path, ...], csv_file: Path | None, batch_size: int) -> None:
    """Classify IMAGES (files, or folders searched recursively) with an exported BUNDLE: the
    class and its probability for each, as each batch is done."""
    from skinsearch.results.predict import new_csv_file, write_predictions_csv
    from skinsearch.results.predict import predict as run_predict

    csv_file = new_csv_file(csv_file) if csv_file is not None else None
    rows = []
    for p in run_predict(bundle, list(images), batch_size):
        click.echo(f"{p.image}\t{p.label}\t{p.probability:.3f}")
        rows.append(p)
    if csv_file is not None:
        write_predictions_csv(csv_file, rows)  # whole, or not there at all
        click.echo(f"probabilities of {len(rows)} images written to {csv_file}", err=True)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Labelled images instead of the search's test split: a CSV/TSV table, a folder of "
    "class folders, or a split folder's test/.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write evaluation.json and the figures (confusion matrix, ROC, reliability) here.",
)
@click.option(
    "--positive", help="A class whose sensitivity at 90% and 95% specificity is reported."
)
@_batch_size
@user_errors
def evaluate(
    bundle: Path, data: Path | None, out: Path | None, positive: str | None, batch_size: int
) -> None:
    """Score an exported BUNDLE on images nobody tuned on: its search's held-out test split
    (data.test_fraction, a split column or a test/ folder), or --data. Accuracy, balanced
    accuracy, macro-F1 and AUC with 95% bootstrap intervals, per-class precision/recall/F1,
    the calibration error, and with --positive the sensitivity at fixed specificities."""
    from skinsearch.results.evaluate import (
        check_out_dir,
        evaluate_bundle,
        evaluation_lines,
        write_evaluation_dir,
    )

    if out is not None:
        check_out_dir(out)  # before any image is decoded
    found = evaluate_bundle(bundle, data, positive, batch_size)
    for line in evaluation_lines(found.record):
        click.echo(line)
    if out is not None:
        written = write_evaluation_dir(out, found.record, found.labels, found.probs)
        click.echo(f"evaluation.json and figures written to {written}")
