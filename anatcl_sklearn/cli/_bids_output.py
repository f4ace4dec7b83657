"""``anatcl-sklearn embed --bids DIR --output FOLDER``: embeddings as a BIDS derivative.

The folder holds

- ``dataset_description.json``: ``DatasetType: derivative``; ``GeneratedBy[0]`` names
  anatcl-sklearn and its version, the weights (as given, their identity and SHA-256, the
  fold) and the settings that change the numbers (output kind, ``--conform``, precision,
  the input pipeline and space, the number of features); ``SourceDatasets`` points at the
  input folder (relative);
- ``embeddings.tsv``: one row per grey-matter map, its BIDS entities (``participant_id``,
  ``session_id``, ``run`` when present, any other entity that tells maps apart), ``image``
  (the map's path relative to the input folder) and the feature columns; missing values
  ``n/a``;
- ``embeddings.json``: the sidecar describing every column.

Each file is written atomically, the description last. ``--update`` reads what the folder
records: a run whose weights, settings or input folder differ is refused, naming them; otherwise only the maps whose entities
the table lacks are embedded and appended, the existing rows left byte for byte.
"""

from __future__ import annotations

import json
import os
import re

DESCRIPTION = "dataset_description.json"
TABLE = "embeddings.tsv"
SIDECAR = "embeddings.json"
NA = "n/a"
#: The flag behind each recorded setting, to name it in --update's refusal.
_FLAGS = {"Identity": "--weights", "SHA256": "--weights (SHA-256)", "Fold": "--fold",
          "Output": "--output-kind", "Conform": "--conform", "Precision": "--precision",
          "Pipeline": "--pipeline", "Space": "--space"}
_ENTITY_TEXT = {
    "participant_id": "participant label, sub-<label>",
    "session_id": "session label, ses-<label>",
    "run": "run index",
}


class OutputError(Exception):
    """``--bids``, ``--output`` or ``--update`` cannot be honoured as asked (a user error of
    the command: exit status 2, one line)."""


def is_folder_output(path: str) -> bool:
    """Whether ``--output`` names a folder (no .csv / .parquet extension)."""
    return not path.lower().endswith((".csv", ".parquet"))


def check_folder(path: str, force: bool, update: bool) -> str:
    """The absolute output folder, refused before any work when it cannot be used."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"--output {path!r} exists and is not a folder (a BIDS derivative "
                          "is a folder; name a .csv or .parquet file for a table).")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise OutputError(f"--output folder {parent!r} does not exist.")
    present = [n for n in (TABLE, DESCRIPTION) if os.path.lexists(os.path.join(path, n))]
    if present and not (force or update):
        raise OutputError(f"--output {path!r} already holds {present[0]}; pass --update to add "
                          "the new images, or --force to replace it.")
    if DESCRIPTION in present and not _ours(os.path.join(path, DESCRIPTION)):
        raise OutputError(f"--output {path!r} holds the {DESCRIPTION} of another dataset (not "
                          "written by anatcl-sklearn: a study or a pipeline's derivative, "
                          "perhaps the input itself); name a folder of its own, e.g. "
                          f"{os.path.join(os.path.dirname(path) or '.', 'anatcl')!r}.")
    if update and present and present[0] != TABLE:
        raise OutputError(f"--update: {path!r} holds {DESCRIPTION} but no {TABLE}; pass "
                          "--force to write it anew.")
    target = path if os.path.isdir(path) else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(f"--output folder {target!r} is not writable.")
    return path


def _ours(path: str) -> bool:
    """Whether a dataset_description.json was written by this command (an unreadable or
    damaged one counts as ours: --update refuses it, --force replaces it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            name = json.load(fh)["GeneratedBy"][0]["Name"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return True
    return name == "anatcl-sklearn"


def weights_record(weights: str, fold: int) -> dict:
    """What identifies the weights: as given (not compared by ``--update``: the same file may
    be named two ways), their identity, SHA-256 and, for the official weights, the fold."""
    from ..models import OFFICIAL_WEIGHTS
    from ..models._identity import weights_identity

    record: dict[str, object] = {"Given": weights, "Identity": weights_identity(weights, fold), "SHA256": None}
    if weights in OFFICIAL_WEIGHTS:
        from ..models._official import _expected_sha256

        record.update(SHA256=_expected_sha256(weights, fold), Fold=int(fold))
    elif os.path.isfile(weights):
        from ..models._digest import file_sha256

        record["SHA256"] = file_sha256(weights)
    else:
        from ..models._saved import CONFIG_NAME

        try:
            with open(os.path.join(weights, CONFIG_NAME), encoding="utf-8") as fh:
                record["SHA256"] = json.load(fh).get("weights_sha256")
        except (OSError, ValueError, AttributeError):
            pass
    return record


def _short(value) -> str:
    """A recorded value for a message: SHA-256 digests cut to 12 digits."""
    text = repr(value)
    return re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1...", text)


def _cell(value) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return NA
    return str(value)


class Derivative:
    """The derivative folder of one run: what it records and what it already holds."""

    def __init__(self, folder: str, generated: dict, entities: list[str], source: str):
        self.folder = folder
        self.generated = generated
        self.entities = entities
        self.source = source
        self.header: list[str] | None = None
        self.lines: list[str] = []
        self.text = ""
        self.force = False  # --force: replace what the folder holds, even what appears later

    # ------------------------------------------------------------ update
    def read_existing(self) -> None:
        """Read the folder's table and records; refuse another run's weights or settings."""
        table = os.path.join(self.folder, TABLE)
        if not os.path.lexists(table):
            return
        if not os.path.isfile(table):  # a dangling link, a FIFO, a folder: not ours to replace
            raise OutputError(f"--update: {table!r} is not a regular file; pass --force to "
                              "write it anew.")
        try:
            with open(table, encoding="utf-8", newline="") as fh:
                self.text = fh.read()
            with open(os.path.join(self.folder, DESCRIPTION), encoding="utf-8") as fh:
                description = json.load(fh)
            recorded = description["GeneratedBy"][0]
            sources = description.get("SourceDatasets") or [{}]
            source = sources[0].get("URL") if isinstance(sources[0], dict) else None
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise OutputError(f"--update: cannot read what {self.folder!r} records ({exc}); "
                              "pass --force to write it anew.") from None
        differ = []
        for group in ("Weights", "Settings"):
            old, new = recorded.get(group) or {}, self.generated[group]
            differ += [f"{_FLAGS.get(key, key)}: {_short(old.get(key))} recorded, "
                       f"{_short(new.get(key))} now"
                       for key in sorted(set(old) | set(new))
                       if key != "Given" and old.get(key) != new.get(key)]
        if isinstance(source, str) and source:  # the maps of another study are not "new"
            was = os.path.realpath(os.path.join(self.folder, source))
            if was != os.path.realpath(self.source):
                differ.append(f"--bids: {was!r} recorded, {self.source!r} now")
        if differ:
            raise OutputError(f"--update: {self.folder!r} holds embeddings made with other "
                              f"weights or settings: {'; '.join(differ)}. Use another --output, "
                              "or --force to replace them.")
        lines = self.text.splitlines()
        if not lines:
            raise OutputError(f"--update: {table!r} is empty (not a table this command wrote); "
                              "pass --force to write it anew.")
        self.header, self.lines = lines[0].split("\t"), lines[1:]
        for number, line in enumerate(self.lines, 2):  # a cut or edited row: not ours
            if line.count("\t") != len(self.header) - 1:
                raise OutputError(f"--update: {table!r}, line {number}, has "
                                  f"{line.count(chr(9)) + 1} cells for {len(self.header)} "
                                  "columns (cut short or edited?); pass --force to write it "
                                  "anew.")
        missing = [c for c in self.entities if c not in self.header]
        if missing:
            raise OutputError(f"--update: the images now have entities {missing} that "
                              f"{table!r} lacks (its columns start "
                              f"{self.header[:len(self.entities) + 1]}); write a new --output.")

    def new_rows(self, frame) -> list[int]:
        """Positions of ``frame``'s rows whose entities the existing table lacks."""
        if self.header is None:
            return list(range(len(frame)))
        index = [self.header.index(c) for c in self.entities]
        have = set()
        for line in self.lines:
            cells = line.split("\t")
            have.add(tuple(cells[i] if i < len(cells) else NA for i in index))
        keys = frame[self.entities].apply(lambda row: tuple(_cell(v) for v in row), axis=1)
        return [i for i, key in enumerate(keys) if key not in have]

    # ------------------------------------------------------------ writing
    def _rows_text(self, frame, features, names) -> str:
        import io

        import pandas as pd

        table = frame[self.entities].copy()
        table["image"] = [os.path.relpath(p, self.source) for p in frame["path"]]
        table = pd.concat([table.reset_index(drop=True),
                           pd.DataFrame(features, columns=names)], axis=1)
        if self.header is not None and list(table.columns) != self.header:
            raise OutputError(f"--update: the columns of {TABLE} ({self.header[:4]}...) are not "
                              f"those of this run ({list(table.columns)[:4]}...); write a new "
                              "--output.")
        buffer = io.StringIO()
        table.to_csv(buffer, sep="\t", index=False, na_rep=NA, float_format="%.9g",
                     header=self.header is None, lineterminator="\n")
        return buffer.getvalue()

    def _sidecar(self, names) -> dict:
        columns = {c: {"Description": _ENTITY_TEXT.get(c, f"BIDS entity {c}")}
                   for c in self.entities}
        columns["image"] = {"Description": "the grey-matter map, relative to the input "
                                           "folder (SourceDatasets)"}
        kind = self.generated["Settings"]["Output"]
        for i, name in enumerate(names):
            columns[name] = {"Description": f"AnatCL {kind} feature {i} of {len(names)}"}
        return columns

    def write(self, frame, features, names) -> int:
        """Write the folder (or append to its table); return the number of rows added."""
        from .._atomic import atomic_write_text

        rows = self._rows_text(frame, features, names)
        table = os.path.join(self.folder, TABLE)
        if self.header is not None:
            try:
                with open(table, encoding="utf-8", newline="") as fh:
                    unchanged = fh.read() == self.text
            except OSError:
                unchanged = False
            if not unchanged:
                raise OutputError(f"--update: {table!r} changed while embedding; run again.")
            text = self.text if self.text.endswith("\n") else self.text + "\n"
            text += rows
        else:
            appeared = [n for n in (TABLE, DESCRIPTION)
                        if os.path.lexists(os.path.join(self.folder, n))]
            if appeared and not self.force:  # another run wrote here while this one embedded
                raise OutputError(f"--output {self.folder!r}: {appeared[0]} appeared while "
                                  "embedding (another run?); nothing written. Run again, with "
                                  "--update to add to it.")
            text = rows
        from .._version import __version__

        generated = {"Name": "anatcl-sklearn", "Version": __version__,
                     "Description": "AnatCL embeddings of grey-matter maps "
                                    "(anatcl-sklearn embed --bids)",
                     **self.generated}
        description = {
            "Name": "AnatCL embeddings", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [generated],
            "SourceDatasets": [{"URL": os.path.relpath(self.source, self.folder)}],
        }
        os.makedirs(self.folder, exist_ok=True)
        # The description is what --update trusts the table by: written last, and a replaced
        # folder's old one removed first, so that a write failing part-way (a full disk, a
        # kill) never leaves one run's description over another run's table.
        described = os.path.join(self.folder, DESCRIPTION)
        if self.header is None and os.path.lexists(described):
            os.unlink(described)
        atomic_write_text(table, text)
        atomic_write_text(os.path.join(self.folder, SIDECAR),
                          json.dumps(self._sidecar(names), indent=2) + "\n")
        atomic_write_text(described, json.dumps(description, indent=2) + "\n")
        return len(frame)


def check_sources(args):
    """Which input and output the command line asks for, checked before any work.

    Returns
    -------
    bids : bool
        Whether the input is ``--bids DIR`` (else INPUT).
    folder : str or None
        The checked output folder of a BIDS derivative, or None for a table.
    """
    if args.bids is None:
        for flag in ("pipeline", "space", "update"):
            if getattr(args, flag):
                raise OutputError(f"--{flag} goes with --bids.")
        if not args.inputs:
            raise OutputError("give INPUT (images, glob patterns or list files) or --bids DIR.")
        return False, None
    if args.inputs:
        raise OutputError(f"give INPUT or --bids, not both (INPUT: {args.inputs[0]!r}).")
    if args.update and args.force:
        raise OutputError("--update adds to an output folder, --force replaces it: pass one.")
    if not is_folder_output(args.output):
        if args.update:
            raise OutputError("--update adds to a BIDS derivative folder: name a folder as "
                              "--output, not a .csv or .parquet file.")
        return True, None
    return True, check_folder(args.output, args.force, args.update)


def open_derivative(args, folder, study, weights, precision):
    """The output folder's :class:`Derivative`, its existing table read for --update."""
    derivative = Derivative(
        folder,
        {"Weights": weights_record(weights, args.fold),
         "Settings": {"Output": args.output_kind, "Conform": bool(args.conform),
                      "Precision": precision, "Pipeline": study.pipeline,
                      "Space": study.space}},
        study.entities, study.root)
    derivative.force = bool(args.force)
    if args.update:
        derivative.read_existing()
    return derivative
