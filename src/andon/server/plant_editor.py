"""The admin's editor of the plant file: read it, check a new text, save it.

One code path for the rules: the API (``PUT /api/v1/admin/plant``) and the admin page call the
same ``PlantEditor``. A check parses the text with ``parse_plant_text``, the function the server
uses at start-up, and reports every problem with its field and line. A save

* needs a comment and refuses on a node that may not write now (a passive cluster node);
* refuses when the file on disk is no longer the version the editor was given (optimistic
  check by content hash: another admin, or someone at the console, changed it meanwhile);
* re-checks the text and refuses it with every problem (nothing is written);
* keeps the previous version as ``<name>.<UTC time>.bak`` next to the file, writes the new text
  to a temporary file in the same directory, fsyncs it and renames it over the file, so a crash
  leaves either the old or the new file, never half of one;
* records an audit entry (who, when, why, the hashes before and after, a unified diff) in the
  same database transaction as the rename: without the entry the file is not replaced.

The running server does not take the new plant model: its MES builders, stored intervals and
rollups, live feed, UNS mirror and cluster domains were all built from the model it started
with, and mixing two models in derived data without re-deriving it is not safe. The file takes
effect at the next start; ``PlantFileVersion.differs_from_running`` says when the file on disk
is not what the server runs (every node of a cluster must be given the same file).
"""

from __future__ import annotations

import difflib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from andon.domain import DomainError
from andon.server.plant_file import (
    PlantFileError,
    PlantModel,
    PlantProblem,
    parse_plant_text,
    text_sha256,
)
from andon.storage.audit import AuditLog

__all__ = [
    "MAX_PLANT_BYTES",
    "PlantCheck",
    "PlantConflictError",
    "PlantEditor",
    "PlantFileVersion",
    "PlantInvalidError",
    "PlantRefusedError",
    "PlantSaved",
    "PlantUnavailableError",
]

log = logging.getLogger(__name__)

#: A plant of a thousand machines is a few hundred kB of TOML; more is refused unread.
MAX_PLANT_BYTES = 2 * 2**20
AUDIT_ENTITY = "plant_file"
_NOT_APPLIED = "stored; takes effect at the next server start"


class PlantInvalidError(DomainError):
    """The text does not pass the start-up rules; ``problems`` lists every mistake."""

    def __init__(self, problems: tuple[PlantProblem, ...]) -> None:
        self.problems = problems
        super().__init__(f"the plant file has {len(problems)} problem(s); nothing was saved")


class PlantConflictError(Exception):
    """The file on disk changed since the editor loaded it (``current_sha256`` is on disk)."""

    def __init__(self, message: str, current_sha256: str) -> None:
        super().__init__(message)
        self.current_sha256 = current_sha256


class PlantRefusedError(Exception):
    """This node may not write now (a passive cluster node); the message says why."""


class PlantUnavailableError(Exception):
    """The plant file cannot be read or written (permissions, a missing directory, disk)."""


@dataclass(frozen=True, slots=True)
class PlantFileVersion:
    path: str
    text: str
    sha256: str
    #: The hash of the file the server loaded at start-up: the configuration it runs.
    running_sha256: str

    @property
    def differs_from_running(self) -> bool:
        return self.sha256 != self.running_sha256


@dataclass(frozen=True, slots=True)
class PlantCheck:
    problems: tuple[PlantProblem, ...]
    #: What the text holds when it is valid (``assets: 12`` ...), for the page to show.
    summary: tuple[tuple[str, int], ...] = ()
    #: The unified diff from the file on disk to the text.
    diff: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class PlantSaved:
    sha256: str
    previous_sha256: str
    backup: str
    audit_id: int
    #: Always False: the running server keeps the model it started with (see the module doc).
    applied: bool = False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _summary(model: PlantModel) -> tuple[tuple[str, int], ...]:
    return (
        ("assets", len(model.tree)),
        ("assets with states", len(model.bound_assets)),
        ("tag bindings", len(model.bindings)),
        ("state maps", len({id(m) for m in model.state_maps.values()})),
        ("items", len(model.items)),
        ("rates", len(model.rate_list)),
        ("shift calendars", len(model.calendars)),
        ("orders", len(model.orders)),
    )


def _diff(name: str, before: bytes, after: bytes) -> str:
    old = before.decode("utf-8", errors="replace").splitlines(keepends=True)
    new = after.decode("utf-8", errors="replace").splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, f"{name} (before)", f"{name} (after)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(directory: Path, name: str, data: bytes, mode: int) -> Path:
    """``data`` in a new file of ``directory``, flushed to disk; the caller renames it."""
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = _write_temporary(path.parent, path.name, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


class PlantEditor:
    def __init__(
        self,
        path: Path,
        running_sha256: str,
        audit: AuditLog,
        *,
        refusal: Callable[[], str | None] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.path = path
        self.running_sha256 = running_sha256
        self.audit = audit
        self._refusal = refusal
        self._clock = clock
        self._lock = threading.Lock()  # one save at a time (the hash check holds until rename)

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise PlantUnavailableError(f"cannot read the plant file {self.path}: {exc}") from exc

    def current(self) -> PlantFileVersion:
        raw = self._read()
        text = raw.decode("utf-8", errors="replace")
        return PlantFileVersion(str(self.path), text, text_sha256(raw), self.running_sha256)

    def check(self, text: str) -> PlantCheck:
        """Every problem of ``text`` by the start-up rules, with field and line; nothing
        changes. A valid text also gets a summary and its diff from the file on disk."""
        raw, current = self._encode(text), self._read()
        return self._check(self._same_line_ends(raw, current), current)

    def _check(self, raw: bytes, current: bytes) -> PlantCheck:
        if len(raw) > MAX_PLANT_BYTES:
            message = f"the text is {len(raw)} bytes; at most {MAX_PLANT_BYTES} are accepted"
            return PlantCheck((PlantProblem("", message),))
        try:
            model = parse_plant_text(raw, self.path.name)
        except PlantFileError as exc:
            return PlantCheck(exc.problems)
        except Exception as exc:  # a rule that failed in an unforeseen way: refuse, say so
            log.exception("checking a plant file failed unexpectedly")
            return PlantCheck((PlantProblem("", f"the check failed unexpectedly: {exc!r}"),))
        return PlantCheck((), _summary(model), _diff(self.path.name, current, raw))

    def save(self, actor: str, text: str, base_sha256: str, comment: str) -> PlantSaved:
        """Replace the file with ``text`` (see the module doc); raises ``DomainError`` (no
        comment, no change), ``PlantInvalidError``, ``PlantConflictError``,
        ``PlantRefusedError`` or ``PlantUnavailableError``, each changing nothing."""
        if not comment.strip():
            raise DomainError("a comment is required: say why the plant configuration changes")
        refused = None if self._refusal is None else self._refusal()
        if refused is not None:
            raise PlantRefusedError(refused)
        raw = self._encode(text)
        with self._lock:
            current = self._read()
            current_sha256 = text_sha256(current)
            if current_sha256 != base_sha256:
                raise PlantConflictError(
                    "the plant file changed on disk since you loaded it: reload it, apply your "
                    "change again and save",
                    current_sha256,
                )
            raw = self._same_line_ends(raw, current)
            if raw == current:
                raise DomainError("nothing to save: the text is the same as the file on disk")
            checked = self._check(raw, current)
            if not checked.ok:
                raise PlantInvalidError(checked.problems)
            try:
                return self._replace(actor, raw, current, checked.diff, comment.strip())
            except OSError as exc:
                raise PlantUnavailableError(f"cannot write the plant file: {exc}") from exc

    def _replace(
        self, actor: str, raw: bytes, current: bytes, diff: str, comment: str
    ) -> PlantSaved:
        mode = self.path.stat().st_mode & 0o7777
        backup = self._backup_path()
        _write_atomically(backup, current, mode)
        temporary = _write_temporary(self.path.parent, self.path.name, raw, mode)
        before, after = text_sha256(current), text_sha256(raw)
        replaced = False
        try:
            with self.audit.engine.begin() as transaction:
                audit_id = self.audit.record(
                    actor, "plant_file.saved", AUDIT_ENTITY, self.path.name,
                    {"sha256": before, "bytes": len(current)},
                    {"sha256": after, "bytes": len(raw), "backup": backup.name,
                     "applied": _NOT_APPLIED, "diff": diff},
                    comment, connection=transaction,
                )  # fmt: skip
                if text_sha256(self._read()) != before:  # changed while we were writing
                    raise PlantConflictError(
                        "the plant file changed on disk while saving: nothing was saved", before
                    )
                os.replace(temporary, self.path)
                replaced = True
                _fsync_directory(self.path.parent)
        except BaseException as exc:
            temporary.unlink(missing_ok=True)
            if replaced:  # the audit entry did not commit: put the previous version back
                _write_atomically(self.path, current, mode)
            else:
                backup.unlink(missing_ok=True)  # a copy of the unchanged file: not needed
            if isinstance(exc, Exception) and not isinstance(
                exc, (PlantConflictError, PlantUnavailableError, OSError)
            ):
                log.exception("saving the plant file failed: nothing was saved")
                raise PlantUnavailableError(
                    f"the audit entry could not be recorded ({exc.__class__.__name__}): "
                    "nothing was saved"
                ) from exc
            raise
        log.info("plant file %s saved by %s (%s -> %s)", self.path, actor, before[:12], after[:12])
        return PlantSaved(after, before, str(backup), audit_id)

    def _backup_path(self) -> Path:
        now_ms = self._clock()
        moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        stamp = f"{moment:%Y%m%dT%H%M%S}{now_ms % 1000:03d}Z"
        candidate = self.path.with_name(f"{self.path.name}.{stamp}.bak")
        serial = 1
        while candidate.exists():
            candidate = self.path.with_name(f"{self.path.name}.{stamp}-{serial}.bak")
            serial += 1
        return candidate

    @staticmethod
    def _encode(text: str) -> bytes:
        return text.encode("utf-8", errors="surrogatepass")

    @staticmethod
    def _same_line_ends(raw: bytes, current: bytes) -> bytes:
        """Browsers send a textarea with CRLF line ends: keep the file's own (LF unless it
        uses CRLF), so that a save changes only what the admin changed."""
        if b"\r\n" in current:
            return raw
        return raw.replace(b"\r\n", b"\n")
