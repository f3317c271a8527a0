"""Commands of the `codec` CLI that live in their own modules, and what they share.

Each module defines one Typer command function; `codec/cli.py` registers it. The
consoles and `user_errors` live here, below the CLI, so that `codec/cli.py` and every
command share them without importing each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from codec.errors import CodecError

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print `error: message` on stderr and exit with `code`."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors a user can cause into one line on stderr and a non-zero exit."""
    try:
        yield
    except CodecError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
    except KeyboardInterrupt:
        fail("interrupted", 130)


@contextlib.contextmanager
def progress_bar(total: float, label: str) -> Iterator[Callable[[float], None]]:
    """A progress bar over `total` units on stderr (hidden when stderr is no terminal);
    yields a function that sets how much is done."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)
