"""Sharing a fitted embedder: the saved-model folder it writes and the Hub upload.

``AnatCLEmbedder.save_pretrained`` and ``push_to_hub`` delegate here; the folder format is
:mod:`anatcl_sklearn.models._saved`'s (one writer for every training path).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..models._card import model_card
from ..models._hub import push_folder, require_hub
from ..models._saved import save_model_dir
from ._parallel import unwrap_module
from ._params import parse_augment

__all__ = ["SharingMixin", "push_to_hub", "save_pretrained", "scaler_from_config"]

_HYPER_PARAMETERS = ("method", "descriptor", "sigma", "kernel", "lambda_age", "lambda_anat",
                     "temperature", "arch", "max_epochs", "batch_size", "lr", "lr_step",
                     "lr_gamma", "weight_decay", "anatomy_scaling", "precision", "random_state")


def save_pretrained(est, directory, *, push_to_hub=None, private=None, token=None,
                    training_data=None):
    """See :meth:`AnatCLEmbedder.save_pretrained`."""
    check_is_fitted(est, "net_")
    if push_to_hub is not None:
        require_hub("push_to_hub")  # before writing anything
    module = unwrap_module(est.net_.module_)
    config = dict(output=est.output, training=_training(est, module),
                  anatomy_scaler=_scaler_config(est.anatomy_scaler_))
    if training_data is not None:  # what the model was trained on: the estimator cannot know
        config["training"]["data"] = str(training_data)
    save_model_dir(directory, module, config, model_card)
    if push_to_hub is not None:
        push_folder(directory, push_to_hub, private=private, token=token)
    return Path(directory)


def push_to_hub(est, repo_id, *, private=None, token=None, commit_message=None):
    """See :meth:`AnatCLEmbedder.push_to_hub`."""
    check_is_fitted(est, "net_")
    require_hub("push_to_hub")
    with tempfile.TemporaryDirectory(prefix="anatcl-push-") as tmp:
        save_pretrained(est, tmp)
        return push_folder(tmp, repo_id, private=private, token=token,
                           commit_message=commit_message)


def _training(est, module):
    trained_here = est.pretrained is None or est.finetune
    inherited = getattr(module, "pretrained_config", None) or {}
    if not trained_here:  # a frozen encoder: the weights' own story
        training = dict(inherited.get("training") or {})
        training.setdefault("pretrained_from", _describe(est.pretrained, est.fold))
        return training
    training = {k: getattr(est, k) for k in _HYPER_PARAMETERS}
    training["augment"] = "+".join(parse_augment(est.augment)) or "none"
    training["epochs_run"] = len(est.history_)
    training["n_subjects"] = getattr(est, "_n_train_images", None)
    if est.pretrained is not None:
        training["pretrained_from"] = _describe(est.pretrained, est.fold)
        training["finetune"] = True
    if not isinstance(training["random_state"], (int, np.integer, type(None))):
        training["random_state"] = None  # a RandomState instance says nothing useful here
    return training


def _describe(pretrained, fold):
    from ..models._pretrained import pretrained_form

    form, _ = pretrained_form(pretrained)
    if form == "official":
        return f"{pretrained} (fold {fold})"
    if form in ("hub", "saved", "file", "missing"):
        return os.fspath(pretrained)
    return f"<{type(pretrained).__name__} in memory>"


def _scaler_config(scaler):
    if scaler is None:
        return None
    return dict(feature_range=list(scaler.feature_range), clip=bool(scaler.clip),
                data_min=scaler.data_min_.tolist(), data_max=scaler.data_max_.tolist(),
                n_samples_seen=int(scaler.n_samples_seen_))


def scaler_from_config(section):
    """The fitted AnatomyScaler a saved config records, or None."""
    if not section:
        return None
    from ..anatomy import AnatomyScaler

    lo = np.asarray(section["data_min"], dtype=np.float64)
    hi = np.asarray(section["data_max"], dtype=np.float64)
    scaler = AnatomyScaler(feature_range=tuple(section.get("feature_range", (0, 1))),
                           clip=bool(section.get("clip", False))).fit(np.stack([lo, hi]))
    scaler.n_samples_seen_ = int(section.get("n_samples_seen", 2))
    return scaler


class SharingMixin:
    """:class:`AnatCLEmbedder`'s sharing methods: the saved-model folder and the Hub upload."""

    def save_pretrained(self, directory: str | os.PathLike, *, push_to_hub: str | None = None,
                        private: bool | None = None, token: str | None = None,
                        training_data: str | None = None) -> Path:
        """Save the fitted model as a folder others can load, and optionally share it.

        Writes ``model.safetensors`` (the encoder ``encoder.*`` and head ``head.0``,
        ``head.2``), ``config.json`` (architecture, output, the input grid with its affine,
        the training method and hyper-parameters, epochs run, the fitted anatomy scaler,
        library and torch versions, the weights' SHA-256) and a ``README.md`` model card.
        ``AnatCLEmbedder(pretrained=directory)`` loads it back without unpickling anything,
        and embeds bit for bit as this embedder does.

        Parameters
        ----------
        directory : str or os.PathLike
            The folder (created if missing; the three files in it are replaced
            atomically).
        push_to_hub : str, default=None
            A Hugging Face Hub repository (``"owner/repo"``, created if missing) to upload
            the folder to. Needs the ``[hub]`` extra.
        private : bool, default=None
            Visibility of a repository created by ``push_to_hub``.
        token : str, default=None
            Hub token (default: the one ``huggingface-cli login`` stored).
        training_data : str, default=None
            What the model was trained on (e.g. "OpenBHB train split, 3,227 subjects"),
            recorded as ``config["training"]["data"]`` and in the model card.

        Returns
        -------
        directory : pathlib.Path
        """
        return save_pretrained(self, directory, push_to_hub=push_to_hub, private=private,
                               token=token, training_data=training_data)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str | None = None) -> str:
        """Upload the fitted model to the Hugging Face Hub as a saved-model folder.

        Needs the ``[hub]`` extra (``pip install "anatcl-sklearn[hub]"``). Others load it
        with ``AnatCLEmbedder(pretrained="hf://owner/repo")``.

        Parameters
        ----------
        repo_id : str
            ``"owner/repo"``, created if missing.
        private : bool, default=None
            Visibility of a created repository.
        token : str, default=None
            Hub token.
        commit_message : str, default=None

        Returns
        -------
        url : str
            The commit's URL.
        """
        return push_to_hub(self, repo_id, private=private, token=token,
                           commit_message=commit_message)
