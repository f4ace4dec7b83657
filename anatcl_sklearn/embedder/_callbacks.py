"""skorch callbacks around the training loop: learning-rate schedule, Ctrl-C safety, resumption,
and the per-epoch table (colour on a terminal only).

Everything around the loop is a callback (skorch's way), so the loop itself stays skorch's.
"""

import copy
import os
import sys

import numpy as np
import torch
from skorch.callbacks import Callback, PrintLog
from skorch.history import History

from ..exceptions import warn
from ._parallel import unwrap_module


def _stdout_has_colour():
    """Whether the per-epoch table may hold ANSI colour codes: stdout is a terminal and the
    ``NO_COLOR`` environment variable (https://no-color.org) is unset or empty."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class TerminalPrintLog(PrintLog):
    """skorch's per-epoch table, with colour only when it is printed to a terminal.

    skorch's :class:`~skorch.callbacks.PrintLog` colours each epoch's best values with ANSI
    escape codes wherever it prints; in a log file or piped notebook output those are noise
    (``\x1b[36m0.5\x1b[0m``). This one asks at every epoch whether stdout is a terminal
    (:func:`_stdout_has_colour`) and otherwise prints the same table, plain.
    :class:`~anatcl_sklearn.embedder._net.ContrastiveNet` uses it as its ``print_log``.
    """

    def format_row(self, row, key, color):
        if not _stdout_has_colour():  # skorch colours a value when row[key + "_best"] is true
            row = {k: v for k, v in row.items() if k != key + "_best"}
        return super().format_row(row, key, color)


class StepLR(Callback):
    """Multiply the learning rate by ``gamma`` every ``step`` epochs (the paper's schedule).

    The rate is computed in closed form from the epoch number, ``lr * gamma ** (epoch // step)``,
    exactly what :class:`torch.optim.lr_scheduler.StepLR` produces, but with no scheduler
    state to save: a resumed run gets the right rate from its history alone.
    """

    def __init__(self, lr, step, gamma):
        self.lr = lr
        self.step = step
        self.gamma = gamma

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1  # skorch adds the new epoch's row before callbacks run
        lr = self.lr * self.gamma ** (epoch // self.step)
        for group in net.optimizer_.param_groups:
            group["lr"] = lr
        net.history.record("lr", lr)


def _cpu_state(module):
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap_module(module).state_dict().items()}


class KeepLastEpoch(Callback):
    """Keep the weights of the last finished epoch, and restore them if training is interrupted.

    skorch swallows ``KeyboardInterrupt`` (Ctrl-C) and returns normally; the weights then are
    those of a half-finished epoch. This callback snapshots the weights (on the CPU) at the end
    of each epoch and, when ``on_train_end`` sees an unfinished epoch, puts the snapshot back,
    drops the unfinished history row and sets ``interrupted_epoch_``.
    """

    def on_train_begin(self, net, **kwargs):
        self.snapshot_ = _cpu_state(net.module_)
        self.interrupted_epoch_ = None

    def on_epoch_end(self, net, **kwargs):
        self.snapshot_ = _cpu_state(net.module_)

    def on_train_end(self, net, **kwargs):
        if len(net.history) and "train_loss" not in net.history[-1]:
            self.interrupted_epoch_ = len(net.history)
            unwrap_module(net.module_).load_state_dict(self.snapshot_)
            del net.history[-1]
        self.snapshot_ = None  # do not carry a second copy of the weights into pickles


def _plain(obj):
    """Convert numpy scalars (skorch averages batch losses with numpy) to Python numbers, so the
    history loads with ``torch.load(weights_only=True)``."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class ResumableCheckpoint(Callback):
    """Save everything needed to resume at the end of every epoch, atomically.

    One file holds the module weights, the optimizer state, the history, the training grid
    and the state of the augmentation generator, so an interrupted or crashed fit resumes from
    its last finished epoch (the batch order needs no state: it is a function of the seed and
    the epoch). The file is written through :func:`anatcl_sklearn._atomic.atomic_write`, so a
    crash while saving never leaves a truncated checkpoint, and a symlink planted at its path
    is replaced, not followed. Under torchrun only rank 0 writes; every rank reads.

    Parameters
    ----------
    path : str
        The checkpoint file.
    generators : dict of str to torch.Generator
        Generators whose states are saved and restored.
    input_shape : tuple of int, default=None
        The training grid, recorded and compared on restore.
    writer : bool, default=True
        Whether this process writes (rank 0).
    run_key : str, default=None
        The run's key (``anatcl_sklearn.embedder._runs.run_key``): recorded in the file and,
        when given, required to match on restore, so another run's file renamed to this
        run's name is not taken for this run's.
    """

    def __init__(self, path, generators=None, input_shape=None, writer=True, run_key=None):
        self.path = path
        self.generators = generators or {}
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.writer = writer
        self.run_key = run_key

    def on_epoch_end(self, net, **kwargs):
        from .._atomic import atomic_write

        state = {
            "model": _cpu_state(net.module_),
            "optimizer": net.optimizer_.state_dict(),
            "history": _plain(net.history.to_list()),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "run_key": self.run_key,
        }
        if self.writer:
            try:
                atomic_write(self.path, lambda tmp: torch.save(state, tmp))
            except (OSError, RuntimeError) as exc:  # torch.save's full disk is a RuntimeError
                if not getattr(self, "write_failed_", False):
                    self.write_failed_ = True
                    warn(f"Checkpoint '{self.path}' could not be written at epoch "
                         f"{len(net.history)} ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); training goes on, and a "
                         "resumed run would start from the last checkpoint written (free disk "
                         "space for the next ones).")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # the file exists for every rank once this returns

    def restore(self, net):
        """Load the checkpoint into an initialized ``net``; return the number of epochs done.

        A file that cannot be read, or that is not a checkpoint of this run (another run key,
        other keys, weights of another shape or type or with NaN, another grid, a foreign
        optimizer state, a history that is not one of finished epochs), is ignored with one
        warning naming it, and training starts afresh: nothing of it is used (a load that
        fails half-way is undone).
        """
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt file must not stop the user: start over, loudly
            return self._ignore(f"it cannot be read ({type(exc).__name__}: {exc})")
        problem = self._problem(state, net)
        if problem is not None:
            return self._ignore(problem)
        module = unwrap_module(net.module_)
        before = (_cpu_state(module), copy.deepcopy(net.optimizer_.state_dict()), net.history)
        try:
            module.load_state_dict(state["model"])
            net.optimizer_.load_state_dict(state["optimizer"])
            net.history = History(copy.deepcopy(state["history"]))
        except Exception as exc:  # what the checks above missed: undo, start over, loudly
            module.load_state_dict(before[0])
            net.optimizer_.load_state_dict(before[1])
            net.history = before[2]
            return self._ignore(f"it could not be loaded ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:300]})")
        for name, gen_state in state.get("generators", {}).items():
            if name in self.generators:
                try:
                    self.generators[name].set_state(gen_state)
                except RuntimeError:  # saved on another kind of device (a GPU run resumed on CPU)
                    warn(
                        f"Checkpoint {self.path!r}: the {name} generator's state was saved on "
                        f"another kind of device than {self.generators[name].device}; resuming "
                        "with a fresh stream, so this run will not repeat an uninterrupted one "
                        "exactly.")
        return len(net.history)

    def _ignore(self, why):
        warn(f"Checkpoint '{self.path}' was ignored: {why}. Training starts from "
                      "scratch and will replace it.", UserWarning)
        return 0

    def _problem(self, state, net):
        """Why ``state`` is not a checkpoint of this run, or None."""
        if not isinstance(state, dict):
            return f"it holds a {type(state).__name__}, not a checkpoint dict"
        missing = [k for k in ("model", "optimizer", "history") if k not in state]
        if missing:
            return f"it lacks {missing} (keys: {sorted(map(str, state))[:8]})"
        expected = unwrap_module(net.module_).state_dict()
        model = state["model"]
        if not isinstance(model, dict) or set(model) != set(expected):
            return "its weights are not those of this model (other parameter names)"
        bad = [k for k, v in expected.items()
               if not isinstance(model[k], torch.Tensor) or model[k].shape != v.shape]
        if bad:
            return f"its weights have other shapes ({bad[:3]})"
        recorded = state.get("input_shape")
        if self.input_shape is not None and recorded is not None \
                and tuple(recorded) != self.input_shape:
            return (f"it was trained on images of {tuple(recorded)}, not "
                    f"{self.input_shape}")
        if self.run_key is not None:
            recorded = state.get("run_key")
            if recorded is None:
                return "it records no run key (an older version's file, or not one of ours)"
            if recorded != self.run_key:
                return (f"it was written by another run (run key {recorded!r}, not this run's "
                        f"{self.run_key!r}: other data or parameters)")
        wrong = [k for k, v in expected.items() if _kind(model[k]) != _kind(v)]
        if wrong:
            return f"its weights have other types ({wrong[:3]})"
        nonfinite = [k for k, v in model.items()
                     if torch.is_floating_point(v) and not torch.isfinite(v).all()]
        if nonfinite:
            return f"its weights hold NaN or inf values ({nonfinite[:3]})"
        return (_optimizer_problem(state["optimizer"], net.optimizer_)
                or _history_problem(state["history"]))


def _kind(tensor):
    return "bool" if tensor.dtype == torch.bool else "float" if tensor.is_floating_point() \
        else "int"


# optimizer settings that say how a step is computed, not what it computes
_IMPLEMENTATION = ("params", "lr", "initial_lr", "foreach", "fused", "capturable",
                   "differentiable", "param_names")


def _same(a, b):
    try:
        return bool(a == b)
    except Exception:  # tensors of several values, odd objects: not the same setting
        return False


def _optimizer_problem(saved, optimizer):
    """Why ``saved`` is not a state of ``optimizer`` (this run's), or None: other parameter
    groups, settings, parameters or moment shapes, or non-finite values."""
    current = optimizer.state_dict()
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)
            and isinstance(saved.get("param_groups"), list)):
        return "its optimizer state is not an optimizer's state dict"
    if len(saved["param_groups"]) != len(current["param_groups"]):
        return (f"its optimizer state has {len(saved['param_groups'])} parameter group(s), not "
                f"{len(current['param_groups'])}")
    shapes: dict = {}
    for old, now, live in zip(saved["param_groups"], current["param_groups"],
                              optimizer.param_groups):
        if not (isinstance(old, dict) and isinstance(old.get("params"), list)
                and len(old["params"]) == len(now["params"])):
            return "its optimizer state's parameter groups are not this model's"
        differ = sorted(k for k in now if k not in _IMPLEMENTATION
                        and (k not in old or not _same(old[k], now[k])))
        if differ:
            return f"its optimizer state has other settings ({differ[:3]})"
        shapes.update(zip(old["params"], (p.shape for p in live["params"])))
    for index, entry in saved["state"].items():
        if index not in shapes or not isinstance(entry, dict):
            return "its optimizer state refers to parameters this model does not have"
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                return f"its optimizer state's {name!r} is not a tensor"
            if (value.shape != shapes[index] and not (name == "step" and value.numel() == 1)):
                return (f"its optimizer state has other shapes ({name} of parameter {index}: "
                        f"{tuple(value.shape)}, not {tuple(shapes[index])})")
            if value.is_floating_point() and not torch.isfinite(value).all():
                return f"its optimizer state holds NaN or inf values ({name} of parameter {index})"
    return None


def _history_problem(history):
    """Why ``history`` is not a list of finished epochs 1, 2, ..., or None."""
    if not isinstance(history, list):
        return "its history is not a list of epochs"
    for i, row in enumerate(history, 1):
        if not (isinstance(row, dict) and row.get("epoch") == i
                and isinstance(row.get("batches"), list)):
            return f"its history is not a list of finished epochs (entry {i}: {str(row)[:80]})"
        loss = row.get("train_loss")
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not np.isfinite(loss):
            return f"its history's epoch {i} has no finite train_loss ({loss!r})"
    return None
