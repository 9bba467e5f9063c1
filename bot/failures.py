"""What cannot start or run, said in one line: what failed, why, and what to do (for the
program's start and for every admin command)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.engine import make_url


class StartupError(Exception):
    """Something the program needs could not be started; the message says what and why."""


@contextlib.contextmanager
def failing_as(what: str, then: str = "") -> Iterator[None]:
    """Any error inside becomes a StartupError "<what>: <the innermost reason>[; <then>]"."""
    try:
        yield
    except StartupError:
        raise
    except Exception as error:
        advice = f"; {then}" if then else ""
        raise StartupError(f"{what}: {reason(error)}{advice}") from error


@contextlib.contextmanager
def failing_database(url: str) -> Iterator[None]:
    """Any error inside is the database's: say which (without its password) and what to do."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        advice = "check DATABASE_URL and that this user may write the file and its directory"
    else:
        advice = (
            "check DATABASE_URL, that the server runs there and that the database exists "
            f"(createdb {parsed.database or 'NAME'})"
        )
    with failing_as(f"cannot open the database {safe_url(url)}", advice):
        yield


def reason(error: BaseException) -> str:
    """The innermost cause's first line: what the driver or the OS said."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or getattr(error, "orig", None)
        if not isinstance(inner, BaseException) or id(inner) in seen:
            break
        seen.add(id(inner))
        error = inner
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def safe_url(url: str) -> str:
    """The URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable URL)"
