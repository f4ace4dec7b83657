"""A hostile pass over the inference cache (embedder/_converted.py), the backend's build
(embedder/_inference.py ``_build``, ``prebuild``) and embed's background thread
(cli/_embedding.py), issue #21: what a careless or hostile user may leave in the cache or do.

The cache's logic runs with the stand-in runtime of tests/test_inference_cache.py (CI has
neither onnxruntime nor OpenVINO); the real runtimes where they are installed.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn._atomic import TEMP_PREFIX
from anatcl_sklearn.embedder import _converted, _inference

from test_inference_cache import SHAPE, FakeBackend, _images


@pytest.fixture
def fitted(narrow_resnet):
    est = AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2, device="cpu", verbose=0,
                         inference="eager", random_state=0)
    return est.fit(_images(2))


@pytest.fixture
def fake(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setitem(_converted.BACKENDS, "onnx", (backend.convert, backend.save, backend.load))
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    return backend


def _fresh(est):
    return clone(est).fit(_images(2))


def _embed(est, X=None, inference="onnx"):
    """transform with no RuntimeWarning allowed (no fallback to eager, no cache warning)."""
    est.set_params(inference=inference)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return est.transform(_images() if X is None else X)


def _entry(cache, backend="onnx"):
    (name,) = [n for n in os.listdir(cache / backend) if not n.startswith(TEMP_PREFIX)]
    return cache / backend / name


def _rewrite_manifest(entry, edit):
    manifest = entry / "entry.json"
    recorded = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(edit(recorded)))


def _no_temporaries(folder):
    return not [n for n in os.listdir(folder) if n.startswith(TEMP_PREFIX)]


# ---------------------------------------------------------------- manifests a user may leave
def _deep(recorded):
    return "[" * 20000 + "]" * 20000  # 40 kB: under the size cap, past json's recursion


@pytest.mark.parametrize("manifest", [
    pytest.param(lambda r: "not json {", id="not-json"),
    pytest.param(lambda r: b"\xff\xfe\x00garbage", id="not-utf8"),
    pytest.param(lambda r: "x" * (1 << 17), id="huge"),
    pytest.param(lambda r: json.dumps([r]), id="a-list"),
    pytest.param(_deep, id="nested-too-deep"),
    pytest.param(lambda r: json.dumps({**r, "files": {"model.onnx": 5}}), id="value-not-pair"),
    pytest.param(lambda r: json.dumps({**r, "files": {"model.onnx": ["5", None]}}),
                 id="pair-wrong-types"),
    pytest.param(lambda r: json.dumps({**r, "files": {"model.onnx": [1, 2, 3]}}),
                 id="value-three"),
    pytest.param(lambda r: json.dumps({**r, "fields": {**r["fields"], "key": "0" * 64}}),
                 id="key-mismatch"),
])
def test_a_manifest_of_any_content_is_converted_again(fitted, fake, cache, manifest):
    """Whatever entry.json holds, the run converts again and embeds with the backend (no
    fallback to eager, which a manifest nested past json's recursion limit used to cause on
    every run: the RecursionError escaped the check and the entry was never replaced)."""
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    entry = _entry(cache)
    recorded = json.loads((entry / "entry.json").read_text())
    content = manifest(recorded)
    if isinstance(content, bytes):
        (entry / "entry.json").write_bytes(content)
    else:
        (entry / "entry.json").write_text(content)
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)
    assert fake.converted == 2 and fake.loaded_from_disk == 0
    _embed(_fresh(fitted))  # the entry was replaced by a sound one
    assert fake.loaded_from_disk == 1 and fake.converted == 2


@pytest.mark.parametrize("name", ["../victim", "../../victim", "/abs/victim", "sub/../model.onnx",
                                  "model.onnx/..", "."])
def test_file_names_in_the_manifest_never_reach_outside_the_entry(fitted, fake, cache, name,
                                                                  tmp_path, monkeypatch):
    """Names with separators or '..' (hand-edited, or planted): nothing outside the entry is
    read, hashed or removed; the entry is converted again."""
    _embed(fitted)
    entry = _entry(cache)
    victim = tmp_path / "victim"
    victim.write_bytes(b"the user's file")
    if name.startswith("/abs/"):
        name = str(victim)
    digest = _converted._sha256(victim)
    read = []
    real_sha = _converted._sha256
    _rewrite_manifest(entry, lambda r: {**r, "files": {
        "model.onnx": r["files"]["model.onnx"], name: [victim.stat().st_size, digest]}})
    monkeypatch.setattr(_converted, "_sha256",
                        lambda path: read.append(Path(path).resolve()) or real_sha(path))
    _embed(_fresh(fitted))
    monkeypatch.undo()
    assert victim.read_bytes() == b"the user's file"
    assert all(p.is_relative_to(cache.resolve()) for p in read), read
    assert fake.converted == 2


def test_another_entrys_files_under_an_adjusted_manifest_are_refused(fitted, fake, cache,
                                                                     monkeypatch):
    """An entry whose model file was swapped for another entry's, its manifest's sizes and
    digests adjusted to match: intact by the manifest, so loaded, but the eager check refuses
    it and it is converted again."""
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    entry = _entry(cache)
    (entry / "model.onnx").write_bytes(b"another entry's graph\n")
    _rewrite_manifest(entry, lambda r: {**r, "files": {"model.onnx": [
        len(b"another entry's graph\n"), _converted._sha256(entry / "model.onnx")]}})
    loaded = fake.load

    def load(model):
        if isinstance(model, Path):  # that graph computes something else
            run = loaded(model) if (model / "model.onnx").read_bytes() == fake.MARKER else None
            if run is None:
                forward = fake.forward
                return lambda x: forward(x) * 2
            return run
        return loaded(model)

    fake.forward = _inference.Forward(fitted.net_.module_, "encoder")
    monkeypatch.setitem(_converted.BACKENDS, "onnx", (fake.convert, fake.save, load))
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)
    assert fake.converted == 2
    assert (_entry(cache) / "model.onnx").read_bytes() == fake.MARKER


def test_a_cached_entry_that_fails_when_run_is_converted_again(fitted, fake, cache, monkeypatch):
    """A conversion read back that loads but raises on the first batch (a graph from another
    model with the manifest adjusted, a runtime that changed its mind): converted afresh,
    not the eager forward for every run from then on."""
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    loaded = fake.load

    def load(model):
        run = loaded(model)
        if not isinstance(model, Path):
            return run

        def broken(x):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid input name")

        return broken

    monkeypatch.setitem(_converted.BACKENDS, "onnx", (fake.convert, fake.save, load))
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)  # no fallback warning
    assert fake.converted == 2


def test_an_entry_linking_to_a_user_folder_is_never_removed_or_written_through(
        fitted, fake, cache):
    """A link in an entry's place, to a folder holding a would-be entry: neither read, nor
    removed, nor written into, also when the eager check refuses the conversion."""
    _embed(fitted)
    entry = _entry(cache)
    mine = cache.parent / "my-folder"
    shutil.copytree(entry, mine)
    shutil.rmtree(entry)
    entry.symlink_to(mine, target_is_directory=True)
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    fake.scale = 2.0  # anything read from disk would fail the check
    other = _fresh(fitted).set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="left alone"):
        other.transform(_images())
    assert entry.is_symlink() and {p.name: p.read_bytes() for p in mine.iterdir()} == before
    assert fake.loaded_from_disk == 0 and _no_temporaries(cache / "onnx")


# ---------------------------------------------------------------- a cache that cannot take it
def test_a_runtime_save_failing_with_its_own_error_keeps_the_backend(fitted, fake, cache,
                                                                      monkeypatch):
    """OpenVINO's save_model on a full disk raises RuntimeError ("Can't open bin file"), not
    OSError: the cache warns, the converted backend still embeds (it used to fall back to
    eager), and no temporary folder is left."""
    eager = _embed(fitted, inference="eager")

    def full(model, folder):
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError('Check \'bin_file\' failed: Can\'t open bin file: "model.bin"')

    monkeypatch.setitem(_converted.BACKENDS, "onnx", (fake.convert, full, fake.load))
    fitted.set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="could not be kept") as record:
        z = fitted.transform(_images())
    assert not [w for w in record if "eager" in str(w.message)]
    (built,) = fitted._inference_cache.values()
    assert built.name == "onnx"
    np.testing.assert_array_equal(z, eager)
    assert _no_temporaries(cache / "onnx")


@pytest.mark.skipif(not _inference.backend_available("openvino"), reason="needs openvino")
def test_real_openvino_save_on_a_full_disk_keeps_the_backend(fitted, cache, monkeypatch):
    import openvino as ov

    def full(model, path, **kwargs):
        ov_save(model, "/dev/full/model.xml", **kwargs)  # the runtime's own failure

    ov_save = ov.save_model
    monkeypatch.setattr(ov, "save_model", full)
    fitted.set_params(inference="openvino")
    with pytest.warns(RuntimeWarning, match="could not be kept"):
        fitted.transform(_images())
    (built,) = fitted._inference_cache.values()
    assert built.name == "openvino" and _no_temporaries(cache / "openvino")


@pytest.mark.parametrize("where", ["mkdtemp", "save", "manifest", "fsync", "rename", "mkdir"])
def test_no_space_left_at_any_point_warns_and_embeds(fitted, fake, cache, monkeypatch, where):
    eager = _embed(fitted, inference="eager")
    enospc = OSError(28, "No space left on device")

    def fail(*args, **kwargs):
        raise enospc

    import anatcl_sklearn._atomic as atomic

    if where == "mkdtemp":
        monkeypatch.setattr(atomic.tempfile, "mkdtemp", fail)
    elif where == "save":
        monkeypatch.setitem(_converted.BACKENDS, "onnx", (fake.convert, fail, fake.load))
    elif where == "manifest":
        real = Path.write_text
        monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: fail() if
                            self.name == "entry.json" else real(self, *a, **k))
    elif where == "fsync":
        monkeypatch.setattr(atomic.os, "fsync", fail)
    elif where == "rename":
        monkeypatch.setattr(atomic.os, "rename", fail)
    else:
        monkeypatch.setattr(Path, "mkdir", fail)
    fitted.set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="No space left"):
        z = fitted.transform(_images())
    monkeypatch.undo()
    np.testing.assert_array_equal(z, eager)
    assert not (cache / "onnx").exists() or os.listdir(cache / "onnx") == []


@pytest.mark.parametrize("what", ["file", "dangling-link", "backend-file"])
def test_a_cache_root_or_backend_folder_that_is_not_a_folder(fitted, fake, cache, what):
    cache.parent.mkdir(exist_ok=True)
    if what == "file":
        cache.write_text("mine")
    elif what == "dangling-link":
        cache.symlink_to(cache.parent / "nowhere")
    else:
        cache.mkdir()
        (cache / "onnx").write_text("mine")
    eager = _embed(fitted, inference="eager")
    fitted.set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="could not be kept"):
        z = fitted.transform(_images())
    np.testing.assert_array_equal(z, eager)
    assert not (cache.parent / "nowhere").exists()
    if what == "backend-file":
        assert (cache / "onnx").read_text() == "mine"


def test_a_cache_root_linked_to_a_folder_is_used(fitted, fake, cache):
    """A linked cache (a home whose .cache is on another disk) is a cache like any other."""
    real = cache.parent / "elsewhere"
    real.mkdir(parents=True)
    cache.symlink_to(real, target_is_directory=True)
    _embed(fitted)
    _embed(_fresh(fitted))
    assert fake.converted == 1 and fake.loaded_from_disk == 1 and cache.is_symlink()


# ---------------------------------------------------------------- the variable's values
@pytest.mark.parametrize("value", ["", "  ", "\t"])
def test_a_blank_variable_means_the_default(monkeypatch, tmp_path, value):
    monkeypatch.setenv(_converted.CACHE_ENV_VAR, value)
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path))
    assert _converted.cache_dir() == tmp_path / "inference"


@pytest.mark.parametrize("value", ["off", " OFF ", "None", "0", "false", "no"])
def test_off_in_any_spelling(monkeypatch, value):
    monkeypatch.setenv(_converted.CACHE_ENV_VAR, value)
    assert _converted.cache_dir() is None


def test_a_tilde_or_relative_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(_converted.CACHE_ENV_VAR, "~/x")
    assert _converted.cache_dir() == tmp_path / "x"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(_converted.CACHE_ENV_VAR, " rel/cache ")
    assert _converted.cache_dir().resolve() == tmp_path / "rel" / "cache"


# ---------------------------------------------------------------- races
def test_an_entry_removed_while_it_is_read_is_converted_again(fitted, fake, cache, monkeypatch):
    """Another run removes the entry between its check and its load: this run converts."""
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    real = _converted._why_unusable

    def checked_then_removed(entry, fields):
        why = real(entry, fields)
        _converted._remove(entry)
        return why

    monkeypatch.setattr(_converted, "_why_unusable", checked_then_removed)
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)
    assert fake.converted == 2 and _no_temporaries(cache / "onnx")


_CONVERT_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from anatcl_sklearn import AnatCLEmbedder
    from anatcl_sklearn.embedder import _converted, _inference
    from test_inference_cache import FakeBackend, _images
    from anatcl_sklearn.models import _resnet3d
    _resnet3d._STAGE_WIDTHS = (16, 32, 64, 128)
    backend = sys.argv[3]
    if backend == "fake":
        fake = FakeBackend()
        _converted.BACKENDS["onnx"] = (fake.convert, fake.save, fake.load)
        _inference.require_backend = lambda name: None
    est = AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2, device="cpu", verbose=0,
                         inference="onnx" if backend == "fake" else backend, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        z = est.fit(_images(2)).transform(_images())
    np.save(sys.argv[2], z)
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fake", "onnx", "openvino"])
def test_two_processes_converting_the_same_weights_at_once(tmp_path, cache, backend):
    """Two real processes convert the same weights into the same cache: both embed, one
    entry is published, no temporary folder is left."""
    if backend != "fake" and not _inference.backend_available(backend):
        pytest.skip(f"{backend} is not installed (optional extra)")
    folder = "onnx" if backend == "fake" else backend
    script = tmp_path / "convert.py"
    script.write_text(_CONVERT_SCRIPT)
    tests = str(Path(__file__).parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(script), tests, str(tmp_path / f"z{i}.npy"),
                               backend], env=env, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "z0.npy"), np.load(tmp_path / "z1.npy"))
    assert len(os.listdir(cache / folder)) == 1 and _no_temporaries(cache / folder)
    assert sorted(os.listdir(_entry(cache, folder))) == sorted(
        ["entry.json", *_converted.FILES[folder]])


# ---------------------------------------------------------------- weights that change
def test_weights_changed_between_two_transforms_are_not_served_by_the_old_build(
        fitted, snapshot, cache):
    """Fine-tuning in place (as an optimizer's step does) between two transforms: the second
    uses the new weights, through a new conversion of its own."""
    fake = snapshot
    first = _embed(fitted)
    with torch.no_grad():
        for p in fitted.net_.module_.parameters():
            p.mul_(1.5)
    second = _embed(fitted)
    eager = _embed(fitted, inference="eager")
    np.testing.assert_array_equal(second, eager)
    assert not np.array_equal(first, second)
    assert fake.converted == 2 and len(os.listdir(cache / "onnx")) == 2



@pytest.fixture
def snapshot(fake, monkeypatch):
    """The stand-in runtime converting as a real one does: a copy of the weights, frozen."""
    import copy

    def convert(forward, x):
        fake.converted += 1
        return copy.deepcopy(forward)

    monkeypatch.setitem(_converted.BACKENDS, "onnx", (convert, fake.save, fake.load))
    return fake


def test_a_refit_between_two_transforms_is_not_served_by_the_old_build(fitted, snapshot,
                                                                        cache):
    """Fine-tuned by fit (one epoch, other images) between two transforms."""
    fake = snapshot
    first = _embed(fitted)
    fitted.set_params(max_epochs=1, inference="eager").fit(_images(4, seed=1))
    second = _embed(fitted)
    np.testing.assert_array_equal(second, _embed(fitted, inference="eager"))
    assert not np.array_equal(first, second) and fake.converted == 2


def test_weights_edited_through_data_are_not_served_by_the_old_build(fitted, snapshot,
                                                                    cache):
    """``p.data.mul_()`` (old-style code, hand-made weight averaging) changes the weights
    without bumping ``p._version``: the backend built for the old weights was reused and the
    embeddings were those of the old weights (absolute error ~1e3 here), silently. The
    weights' norms are now part of what a build is kept for."""
    _embed(fitted)
    with torch.no_grad():
        for p in fitted.net_.module_.parameters():
            p.data.mul_(1.5)
    second = _embed(fitted)
    np.testing.assert_allclose(second, _embed(fitted, inference="eager"), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- anatcl-sklearn embed
@pytest.fixture
def files(tmp_path, narrow_resnet):
    from _embed_helpers import write_images, write_weights

    return write_weights(tmp_path / "w.pth"), write_images(tmp_path, 3)


def _main_thread_in(name):
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_code.co_name == name and frame.f_code.co_filename.endswith("_embedding.py"):
            return True
        frame = frame.f_back
    return False


def test_an_interrupt_while_waiting_for_the_weights_stops_their_thread(files, tmp_path,
                                                                     monkeypatch, capsys):
    """Ctrl-C once the files are checked, while the weights still load (or the backend
    builds): the command ends (130, no output) and the thread is told to stop, as it is when
    the check fails, rather than going on converting in the background."""
    import signal

    from anatcl_sklearn.cli import _embedding

    from _embed_helpers import run_embed

    weights, paths = files
    told, done = [], threading.Event()

    def loading(est, first, n_images, cancelled):
        try:
            for _ in range(6000):  # until the command waits for this thread (at most 60 s)
                if _main_thread_in("result"):
                    break
                cancelled.wait(0.01)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            told.append(cancelled.wait(30))
        finally:
            done.set()

    monkeypatch.setattr(_embedding, "_load_weights_and_build", loading)
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "-o", out) == 130
    assert done.wait(60) and told == [True]
    assert "interrupted" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("damage", ["nan", "truncated"])
def test_a_bad_first_file_read_by_both_threads_is_named_once(files, tmp_path, capsys, damage,
                                                             fake):
    """File 0 is read by the check and by the weights' thread (its fit and the backend's
    build): one line naming it, whichever thread meets it first."""
    import nibabel as nib

    from anatcl_sklearn.images import OPENBHB_AFFINE

    from _embed_helpers import error_line, run_embed

    weights, paths = files
    if damage == "nan":
        data = np.ones(SHAPE, dtype=np.float32)
        data[1, 2, 3] = np.nan
        nib.save(nib.Nifti1Image(data, OPENBHB_AFFINE), paths[0])
    else:
        Path(paths[0]).write_bytes(Path(paths[1]).read_bytes()[:300])
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "--inference", "onnx", "-o", out) == 2
    assert "s0.nii.gz" in error_line(capsys) and not out.exists()
    assert fake.converted == 0


def test_weights_that_fail_to_load_with_sound_files_are_named(files, tmp_path, capsys, fake):
    from _embed_helpers import error_line, run_embed

    weights, paths = files
    state = torch.load(weights)
    state["model"] = {k: v[..., :1] if v.ndim == 5 else v for k, v in state["model"].items()}
    torch.save(state, weights)
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "--inference", "onnx", "-o", out) == 2
    line = error_line(capsys)
    assert "w.pth" in line and "mismatch" in line and not out.exists()


def test_device_cuda_without_cuda_is_one_line(files, fake, tmp_path, capsys):
    """(``fake``: onnxruntime counts as installed, as in a user's [inference-onnx] install,
    so the device is what is refused.)"""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from _embed_helpers import error_line, run_embed

    weights, paths = files
    for inference in ("auto", "onnx"):
        out = tmp_path / "e.csv"
        assert run_embed(*paths, "--weights", weights, "--device", "cuda",
                         "--inference", inference, "-o", out) == 2
        assert "cuda" in error_line(capsys).lower() and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("run", range(3))
def test_a_bad_file_ends_the_process_with_status_2_not_an_abort(tmp_path, run):
    """The real command, a bad second file met while the weights still load in the daemon
    thread: the process used to die at exit with "terminate called without an active
    exception" (status 134, torch's C++ frames unwound by the interpreter's pthread_exit of
    that thread), after the error line; it now exits 2 with that one line."""
    import nibabel as nib

    from anatcl_sklearn.images import OPENBHB_AFFINE

    from _embed_helpers import PREFIX, write_weights

    weights = write_weights(tmp_path / "w.pth")  # full width: its load takes a while
    good, bad = tmp_path / "s0.nii.gz", tmp_path / "s1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), OPENBHB_AFFINE), good)
    data = np.ones(SHAPE, np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, OPENBHB_AFFINE), bad)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           _converted.CACHE_ENV_VAR: str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "anatcl_sklearn", "embed", str(good), str(bad),
                           "--weights", weights, "-o", str(tmp_path / "e.csv")],
                          env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(PREFIX) and "s1.nii.gz" in lines[0]


def test_bids_input_built_ahead_equals_eager_and_a_bad_map_is_named(tmp_path, fake,
                                                                          narrow_resnet,
                                                                          capsys, cache):
    import nibabel as nib

    from anatcl_sklearn.datasets import write_synthetic_bids

    from _embed_helpers import error_line, run_embed, write_weights

    weights = write_weights(tmp_path / "w.pth")
    study = write_synthetic_bids(tmp_path / "study" / "derivatives" / "cat12", n_subjects=3,
                                 shape=SHAPE, compress="mixed")
    outs = {}
    for inference in ("eager", "onnx"):
        outs[inference] = tmp_path / inference  # a BIDS derivative folder
        assert run_embed("--bids", study.root, "--weights", weights, "--inference", inference,
                         "--batch-size", "2", "-o", outs[inference], quiet=True) == 0
    assert fake.converted == 1
    assert ((outs["eager"] / "embeddings.tsv").read_bytes()
            == (outs["onnx"] / "embeddings.tsv").read_bytes())
    first = str(sorted(map(str, study.paths))[0])
    image = nib.load(first)
    data = np.asarray(image.dataobj, dtype=np.float32).copy()
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine, image.header), first)
    out = tmp_path / "bad"
    assert run_embed("--bids", study.root, "--weights", weights, "--inference", "onnx",
                     "-o", out) == 2
    assert Path(first).name in error_line(capsys) and not out.exists()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_real_runtime_entry_with_another_entrys_weights_is_refused(fitted, cache, backend):
    """The real runtimes: an entry whose weights file (OpenVINO's model.bin, ONNX's whole
    graph) was replaced by another entry's, the manifest adjusted to match, loads and runs;
    the eager check refuses it, the entry is converted again, the embeddings are eager's."""
    if not _inference.backend_available(backend):
        pytest.skip(f"{backend} is not installed (optional extra)")
    eager = _embed(fitted, inference="eager")
    _embed(fitted, inference=backend)
    mine = _entry(cache, backend)
    other = _fresh(fitted)
    with torch.no_grad():
        for p in other.net_.module_.parameters():
            p.mul_(0.5)
    _embed(other, inference=backend)
    (theirs,) = [p for p in (cache / backend).iterdir() if p != mine]
    name = _converted.FILES[backend][-1]  # model.bin, or model.onnx
    shutil.copyfile(theirs / name, mine / name)
    _rewrite_manifest(mine, lambda r: {**r, "files": {**r["files"], name: [
        (mine / name).stat().st_size, _converted._sha256(mine / name)]}})
    again = _fresh(fitted)
    z = _embed(again, inference=backend)
    err = np.linalg.norm(z - eager, axis=1) / np.linalg.norm(eager, axis=1)
    assert err.max() <= _inference.RTOL
    (built,) = again._inference_cache.values()
    assert built.name == backend and built.run.cache_entry is None  # converted afresh
    assert (mine / name).read_bytes() != (theirs / name).read_bytes()


def test_conform_inputs_built_ahead_equal_eager(tmp_path, fake, narrow_resnet, cache):
    """--conform, the first image on another grid than the rest: the backend built ahead on
    the conformed first image; the rows are eager's, bit for bit."""
    import nibabel as nib
    import pandas as pd

    from anatcl_sklearn.images import OPENBHB_AFFINE
    from anatcl_sklearn.models import AnatCLModel

    from _embed_helpers import run_embed

    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save({"opts": {"input_shape": list(SHAPE), "input_affine": OPENBHB_AFFINE.tolist()},
                "model": AnatCLModel("resnet18").state_dict()}, weights)
    rng = np.random.default_rng(0)
    coarse = OPENBHB_AFFINE.copy()
    coarse[:3, :3] *= 1.5
    paths = []
    for i, (shape, affine) in enumerate([((16, 19, 16), coarse), (SHAPE, OPENBHB_AFFINE),
                                         ((16, 19, 16), coarse)]):
        paths.append(tmp_path / f"s{i}.nii.gz")
        nib.save(nib.Nifti1Image(rng.random(shape, dtype=np.float32), affine), paths[-1])
    tables = {}
    for inference in ("eager", "onnx"):
        out = tmp_path / f"{inference}.csv"
        assert run_embed(*paths, "--weights", weights, "--conform", "--inference", inference,
                         "--batch-size", "2", "-o", out, quiet=True) == 0
        tables[inference] = pd.read_csv(out)
    assert fake.converted == 1
    pd.testing.assert_frame_equal(tables["eager"], tables["onnx"])


def test_a_second_interrupt_while_waiting_at_exit_leaves_at_once(monkeypatch):
    """At exit the process waits for a cancelled thread (a weights download may take
    minutes); a second Ctrl-C then leaves at once with status 130, finalization skipped
    (so no abort either), rather than a traceback from the atexit handler. (The Ctrl-C is
    raised by the join itself: a real SIGINT here crashed pytest once OpenVINO was loaded.)"""
    from anatcl_sklearn.cli import _embedding

    class Waiting:
        def join(self):
            raise KeyboardInterrupt

    exits = []

    def exit_now(status):
        exits.append(status)
        raise SystemExit(status)

    monkeypatch.setattr(_embedding.os, "_exit", exit_now)
    monkeypatch.setattr(_embedding, "_pending", [Waiting()])
    with pytest.raises(SystemExit):
        _embedding._join_at_exit()
    assert exits == [130] and _embedding._pending == []


def test_embed_with_an_unwritable_cache_warns_in_one_line_and_embeds(files, tmp_path, fake,
                                                                     cache, capsys):
    """The cache's warning comes from the weights' thread: told once, on one line, the
    embedding done with the backend (no fallback to eager)."""
    from _embed_helpers import run_embed

    weights, paths = files
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("not a folder")
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "--inference", "onnx", "-o", out,
                     quiet=True) == 0
    err = capsys.readouterr().err
    assert err.count("could not be kept in the inference cache") == 1, err
    assert "eager" not in err and out.exists() and fake.converted == 1
