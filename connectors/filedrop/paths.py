"""Path checks that keep every remote and local access under its configured root (CWE-22).

Names come from templates (root, pattern, archive dir) and from the server's own directory listing,
which we do not trust either. A relative name is refused when it is empty, absolute, contains NUL, a
backslash or a control character, or has a ``..`` segment; only then is it normalised with
:mod:`posixpath` and joined. Local targets are checked again after ``realpath`` so that a symlink in the
download directory cannot redirect a write.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from hub.errors import PermanentError


class UnsafePathError(PermanentError):
    """A path would leave its root (or is malformed); nothing was read, written or moved."""


def _check_chars(value: str, what: str) -> None:
    if "\x00" in value:
        raise UnsafePathError(f"{what} {value!r} contains a NUL byte; refused.")
    if "\\" in value:
        raise UnsafePathError(f"{what} {value!r} contains a backslash; refused (use '/' only).")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UnsafePathError(f"{what} {value!r} contains a control character; refused.")


def normalize_root(root: str) -> str:
    """Normalise the configured server root; ``..`` segments and odd characters are refused.

    The root may be absolute (``/data/erp``) or relative to the login directory (``inbox``).
    """
    if not root or not root.strip():
        raise UnsafePathError("root is empty; name the server directory the files are dropped in.")
    _check_chars(root, "root")
    if ".." in root.split("/"):
        raise UnsafePathError(f"root {root!r} contains a '..' segment; refused.")
    normalized = posixpath.normpath(root)
    # normpath keeps a leading '//' (POSIX allows it to be special); collapse it.
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    return normalized


def safe_relative(name: str, *, what: str = "path") -> str:
    """Check and normalise a path relative to a root; raises :class:`UnsafePathError`."""
    if not name or name in (".", "/"):
        raise UnsafePathError(f"{what} {name!r} is empty; refused.")
    _check_chars(name, what)
    if name.startswith("/"):
        raise UnsafePathError(f"{what} {name!r} is absolute; only paths relative to the root are allowed.")
    if ".." in name.split("/"):
        raise UnsafePathError(f"{what} {name!r} contains a '..' segment and could leave the root; refused.")
    normalized = posixpath.normpath(name)
    if normalized in (".", "") or normalized.startswith("../") or normalized == "..":
        raise UnsafePathError(f"{what} {name!r} does not name anything under the root; refused.")
    return normalized


def check_pattern(pattern: str) -> str:
    """Check a glob (or plain directory name) relative to the root and return it normalised."""
    return safe_relative(pattern, what="pattern")


def check_listing_name(name: str) -> str:
    """Check one entry name returned by the server's directory listing.

    A listing entry must be a single path segment: anything with '/', '..' or odd bytes is refused
    because a hostile or broken server could otherwise steer us outside the root.
    """
    if name in (".", ".."):
        raise UnsafePathError(f"listing entry {name!r} is a directory self/parent reference; refused.")
    if "/" in name:
        raise UnsafePathError(f"listing entry {name!r} contains '/'; a directory entry must be one name.")
    return safe_relative(name, what="listing entry")


def remote_join(root: str, relative: str) -> str:
    """Join a checked relative path onto the root and verify the result stays under it."""
    rel = safe_relative(relative)
    joined = posixpath.normpath(posixpath.join(root, rel))
    prefix = root.rstrip("/") + "/" if root not in (".", "") else ""
    if root in (".", ""):
        ok = not joined.startswith("/") and not joined.startswith("..")
    else:
        ok = joined.startswith(prefix)
    if not ok:
        raise UnsafePathError(f"path {relative!r} resolves to {joined!r}, outside root {root!r}; refused.")
    return joined


def local_target(local_dir: Path, relative: str) -> Path:
    """Where a remote file (relative path) is stored locally; must stay under ``local_dir``."""
    rel = safe_relative(relative)
    base = os.path.realpath(local_dir)
    target = os.path.realpath(os.path.join(base, *rel.split("/")))
    if os.path.commonpath([base, target]) != base or target == base:
        raise UnsafePathError(
            f"local path for {relative!r} resolves to {target!r}, outside the download directory {base!r}."
        )
    return Path(target)
