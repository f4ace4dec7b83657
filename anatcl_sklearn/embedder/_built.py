"""What ``transform`` keeps of a built inference backend, and what tells that it is stale.

A built backend (:class:`Built`) lives in the estimator's ``_inference_cache`` (a
:class:`BackendCache`), keyed by backend, output, precision, device, shape and batch; it is
used again only while the weights' values are those it was built from (:func:`_versions`).
"""

from __future__ import annotations

import torch


class BackendCache(dict):
    """The built backends of one estimator; pickled, deep-copied and copied empty.

    Compiled or converted modules hold native state that neither pickles nor belongs to a
    copy of the estimator (which may be refitted); they are rebuilt on the next ``transform``.
    """

    def __reduce__(self):
        return (type(self), ())

    def __copy__(self):
        return type(self)()

    def __deepcopy__(self, memo):
        return type(self)()


class Built:
    """A built backend for one key: ``run(x)`` and what it was built from."""

    def __init__(self, name: str, run, module: torch.nn.Module, versions: tuple,
                 build_s: float, key: tuple, error: float | None = None) -> None:
        self.name = name
        self.run = run
        self.module = module
        self.versions = versions
        self.build_s = build_s
        self.key = key
        self.error = error  # relative error on the first image, once checked
        #: (image, its eager embedding), computed ahead by :func:`prebuild`: the check waits
        #: for the first batch, whose forward it reuses when the batch starts with that image
        self.reference: tuple[torch.Tensor, torch.Tensor] | None = None


def _versions(module: torch.nn.Module) -> tuple:
    """What tells the weights' values now; any change rebuilds the backend.

    Each tensor's in-place version counter and storage, and the L2 norm of each floating
    one: an edit through ``.data`` (``p.data.mul_(2)``) bumps no counter, the norms see it
    (one multi-tensor pass, ~15 ms for ResNet-18 on two cores). Not seen: a permutation of
    the values within one tensor, or a flipped sign, made through ``.data``.
    """
    tensors = [t.detach() for t in (*module.parameters(), *module.buffers())]
    floats = [t for t in tensors if t.is_floating_point()]
    with torch.no_grad():
        norms = (torch.stack(torch._foreach_norm(floats)).float().cpu().numpy().tobytes()
                 if floats else b"")
    return (tuple(t._version for t in tensors), tuple(t.data_ptr() for t in tensors), norms)
