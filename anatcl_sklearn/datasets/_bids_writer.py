"""A synthetic study as a BIDS derivatives folder: what CAT12, deepmriprep or fMRIPrep would
have written for a small longitudinal cohort, to try ``anatcl-sklearn embed --bids`` and
:func:`~anatcl_sklearn.datasets.load_bids` without real data.

The subjects are those of :func:`~anatcl_sklearn.datasets.make_synthetic_brains` (same seed,
same subjects: the first session's maps are that function's images, voxel for voxel); each
later session is the same brain some years older, its anatomy aged by the generator's own
age model (cortex thinning, surface area, grey-matter density, ventricles), so that age drives
the maps within a subject as it does across subjects.
"""

from __future__ import annotations

import gzip
import io
import json
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from ..images._grid import OPENBHB_SHAPE

__all__ = ["write_synthetic_bids"]

#: What each pipeline is called in ``dataset_description.json`` and where it puts a map.
PIPELINES = {
    "cat12": "CAT12",
    "deepmriprep": "deepmriprep",
    "fmriprep": "fMRIPrep",
}
#: The template space fMRIPrep names in its grey-matter maps by default.
DEFAULT_SPACE = "MNI152NLin2009cAsym"
_LABEL = re.compile(r"[A-Za-z0-9]+\Z")
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _check_labels(values, name):
    """A tuple of BIDS labels (alphanumeric strings), or None."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be None or a sequence of labels such as ('01', '02'); "
                        f"got {values!r}.")
    labels = tuple(values)
    if not labels:
        raise ValueError(f"{name} must hold at least one label (or be None); got {values!r}.")
    for label in labels:
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ValueError(f"{name} must hold BIDS labels (letters and digits only, e.g. "
                             f"'01'); got {label!r}.")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{name} must not repeat a label; got {values!r}.")
    return labels


def _check_options(pipeline, space, compress, years_between_sessions, smoothing_fwhm):
    if not isinstance(pipeline, str) or pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {sorted(PIPELINES)}; got {pipeline!r}.")
    if not isinstance(space, str) or not _LABEL.match(space):
        raise ValueError(f"space must be a BIDS label such as {DEFAULT_SPACE!r}; got {space!r}.")
    if not (isinstance(compress, (bool, np.bool_)) or compress == "mixed"):
        raise ValueError(f"compress must be True, False or 'mixed'; got {compress!r}.")
    if (isinstance(years_between_sessions, bool)
            or not isinstance(years_between_sessions, numbers.Real)
            or not 0.0 <= float(years_between_sessions) <= 20.0):
        raise ValueError("years_between_sessions must be a number of years in [0, 20]; got "
                         f"{years_between_sessions!r}.")
    if smoothing_fwhm is not None:
        if (isinstance(smoothing_fwhm, bool) or not isinstance(smoothing_fwhm, numbers.Real)
                or not 0.0 < float(smoothing_fwhm) <= 20.0):
            raise ValueError("smoothing_fwhm must be None or a kernel width in mm in (0, 20]; "
                             f"got {smoothing_fwhm!r}.")
        if pipeline == "fmriprep":
            raise ValueError("smoothing_fwhm applies to CAT12 and deepmriprep maps (s<FWHM>mwp1 "
                             "names); fMRIPrep does not smooth its grey-matter maps.")


def _aged(draws, years):
    """The subjects of ``draws`` ``years`` older: their anatomy through the generator's age
    model (CT, SA and so GMV; density, ventricles and deep grey matter follow ``age`` when
    rendered); everything else (sex, site, diagnosis, noise draws) unchanged."""
    from ._synthetic._anatomy_model import _AGE_SLOPE_R, _CT_AGE_RATE, _REFERENCE_AGE
    from ._synthetic._cohorts import _sa_age_factor
    from ._synthetic._geometry import _CT_MAX

    if years == 0:
        return draws
    age = draws["age"]
    new_age = np.minimum(age + years, 100.0)
    old_years = (age - _REFERENCE_AGE)[:, None]
    new_years = (new_age - _REFERENCE_AGE)[:, None]
    ct_ratio = ((1.0 - _CT_AGE_RATE * _AGE_SLOPE_R * new_years)
                / (1.0 - _CT_AGE_RATE * _AGE_SLOPE_R * old_years))
    sa_ratio = (_sa_age_factor(new_age) / _sa_age_factor(age))[:, None]
    ct = np.clip(draws["ct"] * ct_ratio, 1.0, _CT_MAX)
    sa = draws["sa"] * sa_ratio
    gmv = draws["gmv"] * (ct / draws["ct"]) * sa_ratio
    aged = dict(draws)
    aged.update(age=new_age, ct=ct, sa=sa, gmv=gmv,
                anatomy=np.stack([ct, gmv, sa], axis=2))
    return aged


def _nifti(volume, affine, gz):
    """A NIfTI-1 file's bytes (float32, mm, q- and s-form code 1), gzipped reproducibly."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    raw = image.to_bytes()
    if not gz:
        return raw
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as fh:
        fh.write(raw)
    return buffer.getvalue()


def _smooth(volume, fwhm, affine):
    from scipy import ndimage

    voxel = np.abs(np.diag(affine)[:3])
    return ndimage.gaussian_filter(volume, sigma=fwhm / _FWHM_PER_SIGMA / voxel, truncate=3.0)


def _relative_path(pid, ses, run, pipeline, space, fwhm, gz):
    """Where the pipeline puts this image's grey-matter map, relative to the root."""
    entities = [pid] + ([f"ses-{ses}"] if ses is not None else [])
    entities += [f"run-{run}"] if run is not None else []
    folder = Path(pid, *([f"ses-{ses}"] if ses is not None else []), "anat")
    ext = ".nii.gz" if gz else ".nii"
    if pipeline == "fmriprep":
        return folder / ("_".join(entities + [f"space-{space}", "label-GM", "probseg"]) + ext)
    prefix = "mwp1" if fwhm is None else f"s{fwhm:g}mwp1"
    source = "_".join(entities + ["T1w"])
    if pipeline == "deepmriprep":  # deepmriprep's BIDS mode: <...>/anat/mri/mwp1<source>
        folder = folder / "mri"
    return folder / f"{prefix}{source}{ext}"


def _description(pipeline, fwhm):
    generated = {"Name": PIPELINES[pipeline],
                 "Description": "SYNTHETIC maps written by anatcl_sklearn.datasets."
                                "write_synthetic_bids, imitating this pipeline's names; "
                                "not real data"}
    if fwhm is not None:
        generated["Description"] += f"; smoothed with a {fwhm:g} mm FWHM Gaussian kernel"
    return {"Name": f"Synthetic study ({PIPELINES[pipeline]}-like grey-matter maps)",
            "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [generated]}


_PARTICIPANTS_JSON = {
    "age": {"Description": "age at the first session", "Units": "year"},
    "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
    "site": {"Description": "acquisition site (synthetic)"},
    "diagnosis": {"Description": "diagnostic group; HC = healthy control"},
}


def write_synthetic_bids(
    root: str | os.PathLike[str],
    *,
    n_subjects: int = 8,
    sessions: Sequence[str] | None = ("01", "02"),
    runs: Sequence[str] | None = None,
    pipeline: Literal["cat12", "deepmriprep", "fmriprep"] = "cat12",
    space: str = DEFAULT_SPACE,
    shape: tuple[int, int, int] = OPENBHB_SHAPE,
    cohort: str = "openbhb",
    n_sites: int = 4,
    age_range: tuple[float, float] | None = None,
    years_between_sessions: float = 2.0,
    compress: bool | Literal["mixed"] = True,
    smoothing_fwhm: float | None = None,
    random_state: int | np.random.RandomState | None = 0,
    overwrite: bool = False,
) -> Bunch:
    """Write a synthetic study as a BIDS derivatives folder of grey-matter maps.

    The subjects are those of :func:`~anatcl_sklearn.datasets.make_synthetic_brains` with
    the same arguments (the first session's maps are its images, voxel for voxel); each
    later session is the same subject ``years_between_sessions`` older, the anatomy aged by
    the generator's age model, so age drives the maps within subjects as across them. A run
    is a repeated scan: the same anatomy, fresh noise. ``root`` receives:

    - ``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy`` naming the
      imitated pipeline);
    - ``participants.tsv`` (``participant_id``, ``age`` at the first session, ``sex`` as
      ``F``/``M``, ``site``, ``diagnosis``, the cohort's phenotypes) and
      ``participants.json`` describing the columns;
    - with sessions, ``sub-<label>/sub-<label>_sessions.tsv`` (``session_id``, ``age``);
    - one map per subject, session and run, named as the pipeline names it:

      - ``"cat12"``: ``sub-0001/ses-01/anat/mwp1sub-0001_ses-01_T1w.nii.gz`` (CAT12's
        modulated, warped grey matter, prefixed to the source T1w name; ``s6mwp1...`` with
        ``smoothing_fwhm=6``);
      - ``"deepmriprep"``: the same names in ``anat/mri/``, as deepmriprep's BIDS mode
        writes them;
      - ``"fmriprep"``: ``sub-0001/ses-01/anat/sub-0001_ses-01_space-<space>_label-GM_probseg.nii.gz``.

    Every file is written atomically; if writing fails part way, the files this call
    created are removed again.

    Parameters
    ----------
    root : str or os.PathLike
        The derivatives folder to write (created with its parents if missing).
    n_subjects : int, default=8
        Number of subjects.
    sessions : sequence of str or None, default=("01", "02")
        Session labels (letters and digits), in time order; None writes no session level.
    runs : sequence of str or None, default=None
        Run labels (e.g. ``("1", "2")``): repeated scans per session; None writes no run
        entity.
    pipeline : {"cat12", "deepmriprep", "fmriprep"}, default="cat12"
        Whose names to imitate.
    space : str, default="MNI152NLin2009cAsym"
        The ``space-`` label of fMRIPrep's maps (ignored for the others).
    shape : tuple of 3 int, default=(121, 145, 121)
        Image grid, as in :func:`~anatcl_sklearn.datasets.make_synthetic_brains` (the default
        is the released weights' grid; ``(24, 28, 24)`` writes in a blink for tests).
    cohort : str, default="openbhb"
        Population to imitate (``"adni"``, ``"oasis3"``, ``"schizconnect"``, ``"abide"`` have
        diagnostic groups).
    n_sites : int, default=4
        Number of acquisition sites.
    age_range : tuple of 2 float or None, default=None
        Ages at the first session drawn uniformly from this range instead of the cohort's
        distribution.
    years_between_sessions : float, default=2.0
        Years between consecutive sessions (0 to 20); ages are capped at 100.
    compress : bool or "mixed", default=True
        Write ``.nii.gz`` (True), ``.nii`` (False) or alternate between them image by image
        (``"mixed"``, the first image gzipped).
    smoothing_fwhm : float or None, default=None
        Smooth CAT12 / deepmriprep maps with a Gaussian kernel of this FWHM (mm) and name
        them ``s<FWHM>mwp1...``, as those pipelines' smoothing step does: maps the released
        AnatCL weights never saw, to try the loaders' warning.
    random_state : int, RandomState instance or None, default=0
        Seed; the same seed writes the same files.
    overwrite : bool, default=False
        Replace existing files of the same names. Without it, any existing target file is
        refused before anything is drawn or written.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        root : str
            Absolute path of ``root``.
        participants : pandas.DataFrame
            ``participants.tsv`` as written, one row per subject.
        scans : pandas.DataFrame
            One row per map: ``participant_id`` (``sub-0001``), ``session_id``
            (``ses-01``, with sessions), ``run`` (int, with runs), ``age`` at that session, ``sex``, ``site``, ``diagnosis`` and
            ``path`` (absolute).
        paths : list of str
            ``scans["path"]``.
        age : ndarray of shape (n_maps,)
            Age at each map's session.
        anatomy : ndarray of shape (n_maps, 68, 3)
            Each map's Desikan measures (CT, GMV, SA) at that session.
        pipeline : str
            The ``pipeline`` argument.
        participants_path, dataset_description_path : str
            Absolute paths of those files.
        DESCR : str
            :func:`~anatcl_sklearn.datasets.make_synthetic_brains`'s description.

    Raises
    ------
    ValueError
        If an argument is out of range, ``root`` exists and is not a folder, or a target file
        exists and ``overwrite`` is False.
    TypeError
        If an argument has the wrong type.
    OSError
        If the folder cannot be created or written.

    See Also
    --------
    load_bids : find the maps again, with their BIDS entities and participants.
    write_synthetic_brains : a flat folder of maps plus a list file.

    Examples
    --------
    >>> import tempfile, shutil
    >>> from anatcl_sklearn.datasets import write_synthetic_bids
    >>> root = tempfile.mkdtemp()
    >>> data = write_synthetic_bids(root, n_subjects=3, shape=(24, 28, 24),
    ...                             compress="mixed")
    >>> data.scans[["participant_id", "session_id"]].head(3).to_numpy().tolist()
    [['sub-0001', 'ses-01'], ['sub-0001', 'ses-02'], ['sub-0002', 'ses-01']]
    >>> [p[len(root) + 1:] for p in data.paths[:2]]  # doctest: +NORMALIZE_WHITESPACE
    ['sub-0001/ses-01/anat/mwp1sub-0001_ses-01_T1w.nii.gz',
     'sub-0001/ses-02/anat/mwp1sub-0001_ses-02_T1w.nii']
    >>> shutil.rmtree(root)
    """
    from .._atomic import atomic_write_bytes, atomic_write_text
    from ._nifti_writer import _check_folder, _participant_ids
    from ._synthetic._anatomy_model import _COHORTS
    from ._synthetic._cohorts import _draw_subjects
    from ._synthetic._generator import check_cohort_options
    from ._synthetic._geometry import _affine_for
    from ._synthetic._rendering import _draw_images

    n_subjects, n_sites, shape, age_range = check_cohort_options(
        n_subjects, n_sites, shape, cohort, age_range)
    session_labels = _check_labels(sessions, "sessions")
    run_labels = _check_labels(runs, "runs")
    if run_labels is not None and not all(label.isdigit() for label in run_labels):
        raise ValueError(f"runs must hold run indices such as ('1', '2') (BIDS runs are "
                         f"numbers); got {runs!r}.")
    _check_options(pipeline, space, compress, years_between_sessions, smoothing_fwhm)
    fwhm = None if smoothing_fwhm is None else float(smoothing_fwhm)

    ids = _participant_ids(n_subjects)
    plan = [(i, pid, ses, k, run)
            for i, pid in enumerate(ids)
            for k, ses in enumerate(session_labels or (None,))
            for run in (run_labels or (None,))]
    gzipped = [compress is True or (compress == "mixed" and j % 2 == 0)
               for j in range(len(plan))]
    relative = [_relative_path(pid, ses, run, pipeline, space, fwhm, gz)
                for (_, pid, ses, _, run), gz in zip(plan, gzipped)]
    sessions_files = ([Path(pid, f"{pid}_sessions.tsv") for pid in ids]
                      if session_labels is not None else [])
    fixed = [Path("dataset_description.json"), Path("participants.tsv"),
             Path("participants.json")]
    folder: Path = _check_folder(root, [str(p) for p in [*fixed, *sessions_files, *relative]],
                                 overwrite)

    # The same draws as make_synthetic_brains(n_subjects, ..., random_state) makes.
    rng = check_random_state(random_state)
    spec = _COHORTS[cohort]
    base = _draw_subjects(spec, cohort, n_subjects, n_sites, age_range, rng)
    affine = _affine_for(shape)
    sex = np.where(base["sex"] == 1, "M", "F")
    participants = pd.DataFrame({
        "participant_id": ids, "age": base["age"], "sex": sex, "site": base["site"],
        "diagnosis": base["diagnosis"].tolist(),
        **{name: values for name, values in base["phenotypes"].items()},
    })

    # Render every (session, run) of every subject: one pass of the generator's renderer per
    # session and run, with that session's anatomy and that run's noise.
    maps: dict = {}
    session_draws = []
    for k in range(len(session_labels or (None,))):
        draws = _aged(base, k * float(years_between_sessions))
        session_draws.append(draws)
        for r in range(len(run_labels or (None,))):
            if k or r:
                draws = dict(draws, image_seeds=(base["image_seeds"] + 7919 * k + 104729 * r)
                             % (2**31 - 1))
            maps[k, r], _ = _draw_images(draws, spec.pattern, shape)

    folder.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []

    def write(path, data, text=False):
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        new = not os.path.lexists(target)
        (atomic_write_text if text else atomic_write_bytes)(target, data)
        if new:
            created.append(target)

    rows = []
    try:
        write("dataset_description.json",
              json.dumps(_description(pipeline, fwhm), indent=2) + "\n", text=True)
        write("participants.tsv",
              participants.to_csv(sep="\t", index=False, float_format="%.6g"), text=True)
        write("participants.json", json.dumps(_PARTICIPANTS_JSON, indent=2) + "\n", text=True)
        run_index = {label: r for r, label in enumerate(run_labels or (None,))}
        for (i, pid, ses, k, run), gz, rel in zip(plan, gzipped, relative):
            volume = maps[k, run_index[run]][i]
            if fwhm is not None:
                volume = _smooth(volume, fwhm, affine)
            write(rel, _nifti(volume, affine, gz))
            row = {"participant_id": pid}
            if ses is not None:
                row["session_id"] = f"ses-{ses}"
            if run is not None:
                row["run"] = int(run)
            row.update(age=float(session_draws[k]["age"][i]), sex=sex[i],
                       site=int(base["site"][i]), diagnosis=base["diagnosis"][i],
                       path=str(folder / rel))
            rows.append((row, session_draws[k]["anatomy"][i]))
        if session_labels is not None:
            for i, (pid, path) in enumerate(zip(ids, sessions_files)):
                table = pd.DataFrame({
                    "session_id": [f"ses-{s}" for s in session_labels],
                    "age": [d["age"][i] for d in session_draws]})
                write(path, table.to_csv(sep="\t", index=False, float_format="%.6g"),
                      text=True)
    except BaseException:
        for path in created:  # all or nothing for the files this call brought into being
            path.unlink(missing_ok=True)
        raise

    scans = pd.DataFrame([row for row, _ in rows])
    from ._synthetic._generator import _DESCR

    descr = _DESCR.format(
        n=n_subjects, cohort=cohort, description=spec.description,
        counts=", ".join(f"{g}: {int(np.sum(base['diagnosis'] == g))}" for g in spec.groups),
        n_sites=n_sites, shape="x".join(map(str, shape)),
        voxel="x".join(f"{z:.3g}" for z in np.abs(np.diag(affine)[:3])), images="")
    return Bunch(
        root=str(folder),
        participants=participants,
        scans=scans,
        paths=list(scans["path"]),
        age=scans["age"].to_numpy(dtype=float),
        anatomy=np.stack([anatomy for _, anatomy in rows]),
        pipeline=pipeline,
        participants_path=str(folder / "participants.tsv"),
        dataset_description_path=str(folder / "dataset_description.json"),
        DESCR=descr,
    )
