"""What a learner's function calls: the checks refuse an answer that just calls cyclelib's."""

from __future__ import annotations

import inspect
import io
import textwrap
import tokenize
from collections.abc import Callable, Iterable

from cyclelib.exercises._core import Wrong


def names_in(function: Callable) -> set[str] | None:
    """The identifiers in ``function``'s code (comments and strings left out); None when its
    source cannot be read (a builtin, a function typed in a plain console)."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None
    try:
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        return {token.string for token in tokens if token.type == tokenize.NAME}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


def refuse_shortcut(function: Callable, names: Iterable[str], task: str) -> None:
    """Raise :class:`Wrong` when ``function`` uses one of cyclelib's ``names`` for ``task``."""
    found = names_in(function)
    if found is not None and (used := [name for name in names if name in found]):
        raise Wrong(f"{task} by hand: your function uses {', '.join(used)}, which is the answer")
