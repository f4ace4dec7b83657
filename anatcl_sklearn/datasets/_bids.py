"""Grey-matter maps in a BIDS derivatives folder, found by their BIDS names.

:func:`load_bids` walks a folder (a pipeline's derivatives folder, or a BIDS study whose
``derivatives/`` holds one) and keeps the files named as a preprocessing pipeline names its
grey-matter maps:

- CAT12 and deepmriprep: the modulated, warped grey matter ``mwp1`` prefixed to the source
  T1w's name, ``mwp1sub-01_ses-01_T1w.nii`` (in ``anat/``, ``anat/mri/`` or ``mri/``;
  ``mwp1r...`` from CAT12's longitudinal pipeline, whose images are first realigned);
  ``s<FWHM>mwp1...`` is the same map smoothed;
- fMRIPrep / sMRIPrep: ``sub-01_ses-01_space-<X>_label-GM_probseg.nii.gz``, in a named
  template space (the native-space map, without ``space-``, is not on any template grid).

Which pipeline wrote a map is read from the nearest ``dataset_description.json``
(``GeneratedBy[0].Name``, or the older ``PipelineDescription.Name``), else from a folder name
on the way (``cat12*``, ``deepmriprep``, ``fmriprep*``, ``smriprep*``), else from the name's
form (``mwp1``: CAT12; ``label-GM_probseg``: fMRIPrep).

No BIDS library is used: pybids indexes every file of a study into a database (seconds to
minutes on a large study, with SQLAlchemy and its own dependencies), and what is needed here
is two file-name patterns, the entities of a name and two tables; a small walk does it and
its refusals can name exactly what was found.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

__all__ = ["load_bids"]

_MWP1 = re.compile(r"(?P<smooth>s(?P<fwhm>\d+(?:\.\d+)?)?)?mwp1r?(?P<source>sub-[A-Za-z0-9]+"
                   r"(?:_[A-Za-z0-9]+-[A-Za-z0-9]+)*_[A-Za-z0-9]+)\.nii(?:\.gz)?\Z")
_PROBSEG = re.compile(r"(?P<stem>sub-[A-Za-z0-9]+(?:_[A-Za-z0-9]+-[A-Za-z0-9]+)*)_probseg"
                      r"\.nii(?:\.gz)?\Z")
_SKIPPED_FOLDERS = {"sourcedata", "code", "work", "logs", "figures"}
#: Pipelines known by name; anything else is named as its dataset_description.json names it.
_KNOWN = (("deepmriprep", "deepmriprep"), ("smriprep", "smriprep"), ("fmriprep", "fmriprep"),
          ("cat", "cat12"))
#: Entities that become columns, in order, with their column names.
_ID_COLUMNS = {"sub": "participant_id", "ses": "session_id", "run": "run"}


def _entities(stem):
    """The key-value entities of a BIDS name's stem (``sub-01_ses-02_T1w`` -> sub, ses)."""
    out = {}
    for part in stem.split("_"):
        key, sep, value = part.partition("-")
        if sep:
            out[key] = value
    return out


def _pipeline_of_description(path):
    try:
        description = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(description, dict):
        return None
    generated = description.get("GeneratedBy")
    name = None
    if isinstance(generated, list) and generated and isinstance(generated[0], dict):
        name = generated[0].get("Name")
    legacy = description.get("PipelineDescription")
    if not name and isinstance(legacy, dict):
        name = legacy.get("Name")
    return _normalise(name) if isinstance(name, str) and name.strip() else None


def _normalise(name):
    lower = name.strip().lower()
    for key, pipeline in _KNOWN:
        if lower.startswith(key):
            return pipeline
    return lower


class _Pipelines:
    """The pipeline of a folder, from its nearest description or folder name, cached."""

    def __init__(self, root):
        self.root = root
        self.cache = {}

    def __call__(self, folder, by_form):
        folder = Path(folder)
        chain = []
        while True:
            if folder in self.cache:
                found = self.cache[folder]
                break
            chain.append(folder)
            description = folder / "dataset_description.json"
            found = _pipeline_of_description(description) if description.is_file() else None
            if found is None:
                named = _normalise(folder.name)
                found = named if named in {p for _, p in _KNOWN} else None
            if found is not None or folder == self.root or folder.parent == folder:
                break
            folder = folder.parent
        for f in chain:
            self.cache[f] = found
        return found or by_form


def _smoothing_sidecar(path):
    """The smoothing a map's JSON sidecar records (a FWHM or a description), or None."""
    name = path.name
    stem = name[:-7] if name.endswith(".nii.gz") else name[:-4]
    sidecar = path.with_name(stem + ".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    for key, value in meta.items():
        lower = key.lower()
        if ("smooth" in lower or "fwhm" in lower) and value not in (None, False, 0, 0.0, "",
                                                                     "none", "None", [], {}):
            return f"{key}: {value}"
    return None


def _walk(root):
    """Every candidate map under ``root``: dicts of path, form, entities, smoothing."""
    found, nifti = [], []
    seen = set()  # folders reached through symbolic links are walked once (no loop)
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_FOLDERS)
        for name in sorted(files):
            if not name.endswith((".nii", ".nii.gz")):
                continue
            path = Path(folder) / name
            match = _MWP1.match(name)
            if match:
                fwhm = match["fwhm"]
                found.append({"path": path, "form": "mwp1",
                              "entities": _entities(match["source"]),
                              "smoothing": (f"s{fwhm}mwp1" if fwhm else "smwp1")
                              if match["smooth"] else None})
                continue
            match = _PROBSEG.match(name)
            if match:
                entities = _entities(match["stem"])
                if entities.get("label") == "GM":
                    found.append({"path": path, "form": "probseg", "entities": entities,
                                  "smoothing": None})
                    continue
            nifti.append(path)
    return found, nifti


def _examples(root, maps, k=2):
    return ", ".join(os.path.relpath(m["path"], root) for m in maps[:k])


def _describe(root, maps):
    by = Counter(m["pipeline"] for m in maps)
    return "; ".join(
        f"{pipeline}: {count} map{'s' * (count > 1)} (e.g. "
        f"{_examples(root, [m for m in maps if m['pipeline'] == pipeline], 1)})"
        for pipeline, count in sorted(by.items()))


def _choose(root, maps, nifti, pipeline, space):
    """The maps of one pipeline (and one space), or a ValueError naming what was found."""
    if not maps:
        hint = ""
        if nifti:
            t1w = [p for p in nifti if p.name.endswith(("_T1w.nii", "_T1w.nii.gz"))]
            hint = (f" It holds {len(nifti)} other NIfTI file(s) (e.g. "
                    f"{os.path.relpath((t1w or nifti)[0], root)})"
                    + ("; raw T1w images must first be preprocessed by CAT12 or deepmriprep "
                       "into mwp1 maps." if t1w else "."))
        raise ValueError(
            f"no grey-matter maps found under {str(root)!r}: looked for CAT12 / deepmriprep "
            "'mwp1<source>_T1w.nii[.gz]' and fMRIPrep '*_space-<X>_label-GM_probseg.nii[.gz]' "
            f"names.{hint}")
    native = [m for m in maps if m["form"] == "probseg" and "space" not in m["entities"]]
    maps = [m for m in maps if m not in native]
    if not maps:
        raise ValueError(
            f"the {len(native)} label-GM_probseg map(s) under {str(root)!r} (e.g. "
            f"{_examples(root, native, 1)}) have no space- entity: they are in each subject's "
            "native space, not on a template grid; use the maps fMRIPrep writes with "
            "--output-spaces (space-MNI152NLin2009cAsym...), or CAT12 / deepmriprep mwp1 maps.")
    pipelines = sorted({m["pipeline"] for m in maps})
    if pipeline is not None:
        chosen = [m for m in maps if m["pipeline"] == _normalise(pipeline)]
        if not chosen:
            raise ValueError(f"pipeline {pipeline!r}: no map of it under {str(root)!r}; found "
                             f"{_describe(root, maps)}.")
        maps = chosen
    elif len(pipelines) > 1:
        raise ValueError(
            f"{str(root)!r} mixes the grey-matter maps of {len(pipelines)} pipelines, which "
            f"differ in what a voxel holds: {_describe(root, maps)}. Point at one pipeline's "
            f"folder, or choose one (pipeline='{pipelines[0]}', on the command line "
            f"--pipeline {pipelines[0]}).")
    spaces = sorted({m["entities"]["space"] for m in maps if "space" in m["entities"]})
    if space is not None:
        if not spaces:
            raise ValueError(f"space={space!r} selects among label-GM_probseg maps; the maps "
                             f"under {str(root)!r} are mwp1 maps, in their pipeline's own "
                             "template space (no space- entity).")
        maps = [m for m in maps if m["entities"].get("space") == space]
        if not maps:
            raise ValueError(f"space={space!r}: no map in that space under {str(root)!r}; "
                             f"the spaces found are {spaces}.")
    elif len(spaces) > 1:
        raise ValueError(f"{str(root)!r} holds grey-matter maps in {len(spaces)} spaces "
                         f"({', '.join(spaces)}); choose one (space='{spaces[0]}', on the "
                         f"command line --space {spaces[0]}).")
    # CAT12 and deepmriprep write smoothed maps beside the unsmoothed ones: where a source
    # image has both, keep the unsmoothed.
    unsmoothed = {tuple(sorted(m["entities"].items())) for m in maps if m["smoothing"] is None}
    return [m for m in maps if m["smoothing"] is None
            or tuple(sorted(m["entities"].items())) not in unsmoothed]


def _rows(maps):
    """One row per map: the id entities, other entities that vary, path, pipeline."""
    others = sorted({k for m in maps for k in m["entities"]}
                    - set(_ID_COLUMNS) - {"space", "label"})
    has = {k: any(k in m["entities"] for m in maps) for k in _ID_COLUMNS}
    rows = []
    for m in maps:
        e = m["entities"]
        row: dict[str, object] = {"participant_id": f"sub-{e['sub']}"}
        if has["ses"]:
            row["session_id"] = f"ses-{e['ses']}" if "ses" in e else None
        if has["run"]:
            row["run"] = int(e["run"]) if e.get("run", "").isdigit() else e.get("run")
        for k in others:
            row[k] = e.get(k)
        row.update(path=str(m["path"]), pipeline=m["pipeline"])
        if "space" in e:
            row["space"] = e["space"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "run" in frame and frame["run"].map(lambda v: v is None or isinstance(v, int)).all():
        frame["run"] = frame["run"].astype("Int64")
    keys = [c for c in ("participant_id", "session_id", "run", *others) if c in frame]
    frame = frame.sort_values([*keys, "path"], kind="stable", na_position="first")
    return frame.reset_index(drop=True), keys


def _check_unique(frame, keys, root):
    repeated = frame[frame.duplicated(keys, keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        same = repeated[(repeated[keys] == first[keys]).fillna(True).all(axis=1)]["path"]
        raise ValueError(
            f"{len(same)} grey-matter maps under {str(root)!r} have the same BIDS entities "
            f"({', '.join(f'{k}={first[k]}' for k in keys if pd.notna(first[k]))}): "
            f"{', '.join(os.path.relpath(p, root) for p in same[:3])}; keep one per subject, "
            "session and run, or point at one pipeline's folder.")


def load_bids(
    root: str | os.PathLike[str],
    *,
    pipeline: str | None = None,
    space: str | None = None,
    participants: bool = False,
) -> Bunch:
    """Find the grey-matter maps of a BIDS derivatives folder, with their BIDS entities.

    Walks ``root`` (hidden folders and ``sourcedata``, ``code``, ``work``, ``logs``,
    ``figures`` skipped; symbolic links to folders followed, each folder walked once) for CAT12 / deepmriprep ``mwp1<source>_T1w.nii[.gz]`` and fMRIPrep
    ``*_space-<X>_label-GM_probseg.nii[.gz]`` files, across subjects, sessions and runs. The
    pipeline of each map is read from the nearest ``dataset_description.json``, else from a
    folder name (``cat12...``, ``deepmriprep``, ``fmriprep...``), else from the name's form.

    Parameters
    ----------
    root : str or os.PathLike
        A pipeline's derivatives folder (``study/derivatives/cat12``), or a folder holding
        one (a study, ``study/derivatives``).
    pipeline : str or None, default=None
        Keep the maps of this pipeline (``"cat12"``, ``"deepmriprep"``, ``"fmriprep"``...)
        when ``root`` holds several; by default several pipelines are refused.
    space : str or None, default=None
        Keep the ``label-GM_probseg`` maps of this template space (``"MNI152NLin2009cAsym"``)
        when there are several.
    participants : bool, default=False
        Join the columns of ``participants.tsv`` (in ``root``, or in the study whose
        ``derivatives/`` folder holds ``root``) by ``participant_id``, and by
        ``session_id`` when that table has it; per-session values of
        ``sub-<label>/sub-<label>_sessions.tsv`` (an age at each session) win over the
        participant's. Ids without their ``sub-`` / ``ses-`` prefix are matched too.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        frame : pandas.DataFrame
            One row per map, sorted by entities: ``participant_id`` (``sub-01``),
            ``session_id`` (``ses-01``; when any map has a session), ``run`` (when any map
            has a run), any other entity that names maps apart (``acq``, ``rec``, ``res``...),
            ``path`` (absolute), ``pipeline``, ``space`` (probseg maps) and, with
            ``participants=True``, the participants columns.
        images : list of str
            ``frame["path"]``, for :class:`~anatcl_sklearn.AnatCLEmbedder`.
        entities : list of str
            The columns that identify a map (``participant_id``, ``session_id``, ``run``...).
        pipeline : str
            The pipeline that wrote the maps (``"cat12"``, ``"deepmriprep"``,
            ``"fmriprep"``...).
        space : str or None
            The template space of ``label-GM_probseg`` maps (None for ``mwp1`` maps).
        smoothed : list of str
            Maps that are smoothed (an ``s<FWHM>mwp1`` name, or a JSON sidecar recording
            smoothing); a warning names them.
        participants_path : str or None
            The ``participants.tsv`` read (None without ``participants=True``).
        root : str
            Absolute path of ``root``.

    Raises
    ------
    ValueError
        If ``root`` holds no grey-matter map (naming the NIfTI files it does hold: raw T1w
        images need CAT12 or deepmriprep first), maps of several pipelines or spaces without
        ``pipeline`` / ``space``, two maps with the same entities, only native-space probseg
        maps, or (``participants=True``) no readable ``participants.tsv``.
    FileNotFoundError
        If ``root`` is not a folder.

    Warns
    -----
    UserWarning
        When maps are smoothed (the released AnatCL weights saw unsmoothed ``mwp1`` maps) or
        are fMRIPrep probabilities (not modulated), and when a participant has no row in
        ``participants.tsv``.

    Examples
    --------
    >>> import tempfile, shutil
    >>> from anatcl_sklearn.datasets import load_bids, write_synthetic_bids
    >>> root = tempfile.mkdtemp()
    >>> _ = write_synthetic_bids(root, n_subjects=2, shape=(24, 28, 24), compress="mixed")
    >>> data = load_bids(root, participants=True)
    >>> data.frame[["participant_id", "session_id", "pipeline", "diagnosis"]]
      participant_id session_id pipeline diagnosis
    0       sub-0001     ses-01    cat12        HC
    1       sub-0001     ses-02    cat12        HC
    2       sub-0002     ses-01    cat12        HC
    3       sub-0002     ses-02    cat12        HC
    >>> shutil.rmtree(root)
    """
    from ..exceptions import warn

    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike); got {type(root).__name__}.")
    for name, value in (("pipeline", pipeline), ("space", space)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise TypeError(f"{name} must be None or a non-empty str; got {value!r}.")
    if not isinstance(participants, (bool, np.bool_)):
        raise TypeError(f"participants must be a bool; got {participants!r}.")
    root_path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not root_path.is_dir():
        raise FileNotFoundError(f"BIDS folder not found: {str(root_path)!r}.")

    found, nifti = _walk(root_path)
    pipelines = _Pipelines(root_path)
    for m in found:
        m["pipeline"] = pipelines(m["path"].parent,
                                  "cat12" if m["form"] == "mwp1" else "fmriprep")
    maps = _choose(root_path, found, nifti, pipeline, space)
    for m in maps:
        if m["smoothing"] is None:
            recorded = _smoothing_sidecar(m["path"])
            m["smoothing"] = f"sidecar {recorded}" if recorded else None
    frame, keys = _rows(maps)
    _check_unique(frame, keys, root_path)

    smoothed = [str(m["path"]) for m in maps if m["smoothing"]]
    if smoothed:
        example = next(m for m in maps if m["smoothing"])
        warn(f"{len(smoothed)} of {len(maps)} grey-matter maps under {str(root_path)!r} are "
             f"smoothed (e.g. {os.path.relpath(example['path'], root_path)}: "
             f"{example['smoothing']}). The released AnatCL weights saw unsmoothed CAT12 mwp1 "
             "maps (OpenBHB's): embeddings of smoothed maps are off the data they were trained "
             "on. Embed the mwp1 maps, which CAT12 and deepmriprep write before smoothing.")
    if any(m["form"] == "probseg" for m in maps):
        warn(f"the maps under {str(root_path)!r} are fMRIPrep-style label-GM_probseg tissue "
             "probabilities, not modulated CAT12 mwp1 maps: the released AnatCL weights saw "
             "mwp1 maps (grey matter scaled by the warp's volume change) on a 1.5 mm MNI grid, "
             "so expect a shift in the embeddings (conform=True puts them on that grid).")
    participants_path = None
    if participants:
        from ._bids_participants import join_participants

        frame, participants_path = join_participants(frame, root_path)
    return Bunch(
        frame=frame,
        images=list(frame["path"]),
        entities=keys,
        pipeline=str(frame["pipeline"].iloc[0]),
        space=str(frame["space"].iloc[0]) if "space" in frame else None,
        smoothed=smoothed,
        participants_path=participants_path,
        root=str(root_path),
    )
