"""What every command shares: user errors as one ``Error:`` line each (exit 2), Ctrl-C as
exit 130, the options that pick a search, and warnings as one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from skinsearch.errors import Interrupted, SkinsearchError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_STORAGE = "skinsearch-results"


class UserError(click.ClickException):
    """Exit code 2 and one ``Error:`` line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def show(self, file: Any = None) -> None:
        """Print each problem as its own ``Error:`` line on stderr."""
        for problem in self.problems:
            click.echo(f"Error: {problem}", err=True)


def user_errors(command: F) -> F:
    """A command whose ``SkinsearchError`` is one line per problem and whose Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SkinsearchError as exc:
            raise UserError(exc.problems) from None
        except Interrupted as exc:
            click.echo(f"Interrupted: {exc}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def search_options(command: F) -> F:
    """``--name``, ``--storage`` and ``--mlflow-uri``, for the commands that read a search."""
    options = [
        click.option("--name", help="Search name (default: the most recent under --storage)."),
        click.option(
            "--storage",
            default=DEFAULT_STORAGE,
            show_default=True,
            help="Results folder, or s3://BUCKET/PREFIX.",
        ),
        click.option(
            "--mlflow-uri",
            envvar="MLFLOW_TRACKING_URI",
            help="MLflow tracking URI (default: the one the search used).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def format_warning(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> str:
    """A warning for users (skipped images) is one line, not a source excerpt."""
    return f"Warning: {message}\n"
