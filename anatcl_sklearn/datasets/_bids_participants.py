"""The participants of a BIDS study joined to its maps: ``participants.tsv`` by
``participant_id`` (and ``session_id`` when it has one), then per-session values from
``sub-<label>/sub-<label>_sessions.tsv`` (an age at each session), which win."""

from __future__ import annotations

import os

import pandas as pd

__all__ = ["join_participants"]

#: What BIDS tables write for a missing value (``n/a``), and what else is read as one.
_NA = ["n/a", "N/A", "NA", ""]


def _dataset_root(root):
    """The folder holding ``participants.tsv``: ``root``, else the study that holds the
    ``derivatives/`` folder ``root`` is in."""
    if (root / "participants.tsv").is_file():
        return root
    for folder in (root, *root.parents):
        if folder.name == "derivatives" and (folder.parent / "participants.tsv").is_file():
            return folder.parent
    return None


def _read_tsv(path, ids):
    """A BIDS table, with the file named in any error; cells and column names stripped of
    surrounding whitespace (``sub-01 `` is ``sub-01``, ``HC `` is ``HC``)."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read
            raise ValueError(f"{path} is not a regular file.")
        table = pd.read_csv(path, sep="\t", dtype={c: str for c in ids}, na_values=_NA,
                            keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    for c in table.columns:
        if pd.api.types.is_object_dtype(table[c]) or pd.api.types.is_string_dtype(table[c]):
            table[c] = table[c].map(lambda v: v.strip() if isinstance(v, str) else v)
            table[c] = table[c].replace(_NA, float("nan"))
            if c not in ids:  # numbers that were read as text for their spaces
                converted = pd.to_numeric(table[c], errors="coerce")
                if converted.notna().sum() == table[c].notna().sum():
                    table[c] = converted
    return table


def _prefixed(values, prefix):
    return values.map(lambda v: v if pd.isna(v) or str(v).startswith(prefix) else prefix + str(v))


def join_participants(frame, root):
    """``frame`` with the columns of participants.tsv (and of sessions tables) joined."""
    from ..exceptions import warn

    study = _dataset_root(root)
    if study is None:
        raise ValueError(f"participants=True: no participants.tsv in {str(root)!r} (nor in the "
                         "study whose derivatives/ folder holds it).")
    path = study / "participants.tsv"
    table = _read_tsv(path, ("participant_id", "session_id"))
    if "participant_id" not in table:
        raise ValueError(f"{path} has no participant_id column; its columns are "
                         f"{list(table.columns)[:12]}.")
    table["participant_id"] = _prefixed(table["participant_id"], "sub-")
    keys = ["participant_id"]
    if "session_id" in table and "session_id" in frame:
        table["session_id"] = _prefixed(table["session_id"], "ses-")
        keys.append("session_id")
    if table.duplicated(keys).any():
        raise ValueError(f"{path} repeats {keys}: e.g. "
                         f"{table[table.duplicated(keys)].iloc[0][keys].tolist()}.")
    clash = [c for c in table.columns if c in frame.columns and c not in keys]
    merged = frame.merge(table.rename(columns={c: f"{c}_participants" for c in clash}),
                         on=keys, how="left", validate="many_to_one")
    if "session_id" in frame and len(keys) == 1:
        sessions = []
        for pid in frame["participant_id"].unique():
            sfile = study / pid / f"{pid}_sessions.tsv"
            if os.path.lexists(sfile):
                s = _read_tsv(sfile, ("session_id",))
                if "session_id" not in s:
                    raise ValueError(f"{sfile} has no session_id column; its columns are "
                                     f"{list(s.columns)[:12]}.")
                s["session_id"] = _prefixed(s["session_id"], "ses-")
                if s.duplicated("session_id").any():
                    raise ValueError(f"{sfile} repeats session_id: e.g. "
                                     f"{s[s.duplicated('session_id')].iloc[0]['session_id']}.")
                sessions.append(s.assign(participant_id=pid))
        if sessions:
            s = pd.concat(sessions, ignore_index=True)
            per_session = [c for c in s.columns if c not in ("participant_id", "session_id")]
            merged = merged.merge(s.assign(_in_sessions=True),
                                  on=["participant_id", "session_id"], how="left",
                                  suffixes=("_participants", ""), validate="many_to_one")
            # a session of a subject with a sessions table, but without a row in it: its
            # per-session values (an age) would silently be the subject's (a baseline age)
            has_table = merged["participant_id"].isin(set(s["participant_id"]))
            orphans = merged[has_table & merged.pop("_in_sessions").isna()]
            shared = [c for c in per_session if f"{c}_participants" in merged]
            if len(orphans) and shared:
                first = orphans.iloc[0]
                warn(f"{len(orphans)} map(s) under {str(root)!r} are of sessions their "
                     f"subject's sessions.tsv does not list (e.g. {first['participant_id']} "
                     f"{first['session_id']}): their {shared} are the participant's, from "
                     f"{path}, not the session's.")
            for c in per_session:  # a session's value (its age) wins over the subject's
                if f"{c}_participants" in merged:
                    merged[c] = merged[c].fillna(merged.pop(f"{c}_participants"))
    unknown = sorted(set(frame["participant_id"]) - set(table["participant_id"]))
    if unknown:
        warn(f"{len(unknown)} participant(s) with maps under {str(root)!r} are not in {path} "
             f"(e.g. {unknown[0]}): their participants columns are empty.")
    return merged, str(path)
