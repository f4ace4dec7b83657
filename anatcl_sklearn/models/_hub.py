"""The Hugging Face Hub, optional: ``hf://owner/repo[@revision]`` in, ``push_to_hub`` out.

Needs the ``[hub]`` extra (``huggingface_hub``); without it, both directions raise an
ImportError that says how to install it. Only the saved-model files travel
(``model.safetensors``, ``config.json``, ``README.md``).
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import TypeGuard

from .._typing import PathLike

__all__ = ["HUB_PREFIX", "download_from_hub", "is_hub_spec", "parse_hub_spec", "push_folder"]

HUB_PREFIX = "hf://"
_FILES = ["model.safetensors", "config.json", "README.md"]
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
INSTALL_HINT = 'pip install "anatcl-sklearn[hub]"'


def require_hub(what: str) -> ModuleType:
    """The huggingface_hub module, or an ImportError naming the extra to install."""
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the Hugging Face Hub client, which is not installed: "
            f"{INSTALL_HINT} (or pip install huggingface_hub)."
        ) from exc
    return huggingface_hub


def is_hub_spec(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """``hf://owner/repo@rev`` -> (``owner/repo``, ``rev`` or None); ValueError when malformed."""
    body = spec[len(HUB_PREFIX):]
    repo, sep, revision = body.partition("@")
    if not _REPO_RE.match(repo) or (sep and not revision.strip()):
        raise ValueError(
            f"pretrained={spec!r} is not a Hub reference; expected 'hf://owner/repo' or "
            "'hf://owner/repo@revision' (a branch, tag or commit)."
        )
    return repo, (revision or None)


def download_from_hub(spec: str, cache_dir: PathLike | None = None) -> str:
    """Download a saved-model folder from the Hub (or find it in the local Hub cache).

    Returns the local folder. ``HF_HUB_OFFLINE=1`` uses the cache alone.
    """
    repo, revision = parse_hub_spec(spec)
    hub = require_hub(f"pretrained={spec!r}")
    try:
        return hub.snapshot_download(repo_id=repo, revision=revision, allow_patterns=_FILES,
                                     cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - the hub raises many types; say which repo
        raise OSError(
            f"Could not get {spec} from the Hugging Face Hub: {type(exc).__name__}: {exc}"
        ) from exc


def push_folder(
    directory: PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a saved-model folder's files to ``repo_id`` (created if missing).

    Returns the URL of the commit.
    """
    if not isinstance(repo_id, str) or not _REPO_RE.match(repo_id):
        raise ValueError(f"push_to_hub={repo_id!r} is not a Hub repository id; expected "
                         "'owner/repo'.")
    hub = require_hub("push_to_hub")
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(directory),
                             allow_patterns=_FILES, revision=revision,
                             commit_message=commit_message or "Upload AnatCL model "
                                                              "(anatcl-sklearn)")
    return getattr(info, "commit_url", str(info))
