"""The weights cache (digests, re-fetching, resuming) and honest checkpoint refusals."""

import contextlib
import errno
import hashlib
import os
import pickle
import re
import shlex
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pytest
import torch

from anatcl_sklearn.models import (
    AnatCLModel,
    _official,
    _transfer,
    fetch_official_weights,
    load_checkpoint,
)
from anatcl_sklearn.models._checkpoint import _safe_torch_load
from anatcl_sklearn.models._digest import (
    check_digest,
    file_sha256,
    read_digest,
    write_digest,
)

NAME = "anatcl-local"
FOLD = 2


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    # No developer cache or mirror, no real URL, no real pauses between attempts.
    monkeypatch.delenv("ANATCL_SKLEARN_CACHE", raising=False)
    monkeypatch.delenv("ANATCL_SKLEARN_WEIGHTS_URL", raising=False)
    monkeypatch.setattr(_transfer, "_BACKOFF_S", (0.0, 0.0))


@contextlib.contextmanager
def _umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _source(tmp_path, data=None, name="weights.bin"):
    data = os.urandom(300_000) if data is None else data
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def _fetch(cache, url, **kw):
    kw.setdefault("progress", False)
    return fetch_official_weights(NAME, FOLD, cache_dir=cache, url=url, **kw)


def _leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if p.name.startswith("."))


def _with_registry_digest(monkeypatch, digest):
    entries = {name: dict(entry) for name, entry in _official.OFFICIAL_WEIGHTS.items()}
    digests = list(entries[NAME]["sha256"])
    digests[FOLD] = digest
    entries[NAME]["sha256"] = tuple(digests)
    monkeypatch.setattr(
        _official,
        "OFFICIAL_WEIGHTS",
        MappingProxyType({k: MappingProxyType(v) for k, v in entries.items()}),
    )


# --------------------------------------------------------------------------
# Digest helpers
# --------------------------------------------------------------------------


def test_file_sha256_streams_large_and_empty_files(tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom((5 << 20) // 2 + 17)  # several 1 MiB chunks and a tail
    big.write_bytes(data)
    assert file_sha256(big) == _sha(data)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert file_sha256(str(empty)) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.bin")


def test_write_digest_is_sha256sum_format_atomic_and_group_readable(tmp_path):
    path, _ = _source(tmp_path, b"abc", "weights.pth")
    with _umask(0o022):
        digest = write_digest(path)
    assert digest == _sha(b"abc")
    sidecar = tmp_path / "weights.pth.sha256"
    assert sidecar.read_text() == f"{digest}  weights.pth\n"
    assert sidecar.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pth", "weights.pth.sha256"]
    assert read_digest(path) == digest
    # A digest the caller already has is trusted (no second read of the file).
    assert write_digest(path, hexdigest=digest.upper()) == digest
    with pytest.raises(ValueError, match="64 hexadecimal"):
        write_digest(path, hexdigest="abc")


def test_write_digest_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    path, _ = _source(tmp_path, b"abc", "weights.pth")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("untouched")
    (tmp_path / "weights.pth.sha256").symlink_to(elsewhere)
    write_digest(path)
    assert elsewhere.read_text() == "untouched"
    assert not (tmp_path / "weights.pth.sha256").is_symlink()
    assert check_digest(path)


@pytest.mark.parametrize(
    "content",
    ["", "not a digest\n", "abc123  weights.pth\n", "g" * 64 + "  weights.pth\n", b"\xff\xfe"],
)
def test_read_digest_returns_none_for_malformed_sidecars(tmp_path, content):
    path, _ = _source(tmp_path, b"abc", "weights.pth")
    sidecar = tmp_path / "weights.pth.sha256"
    if isinstance(content, bytes):
        sidecar.write_bytes(content)
    else:
        sidecar.write_text(content)
    assert read_digest(path) is None
    assert check_digest(path) is False


def test_read_digest_accepts_binary_mode_and_upper_case(tmp_path):
    path, _ = _source(tmp_path, b"abc", "weights.pth")
    assert read_digest(path) is None
    (tmp_path / "weights.pth.sha256").write_text(_sha(b"abc").upper() + " *weights.pth\n")
    assert read_digest(path) == _sha(b"abc")


def test_check_digest_against_sidecar_and_expected(tmp_path):
    path, _ = _source(tmp_path, b"abc", "weights.pth")
    assert check_digest(path) is False  # no sidecar, no expected value
    assert check_digest(path, _sha(b"abc")) is True
    assert check_digest(path, _sha(b"abc").upper()) is True
    assert check_digest(path, _sha(b"abd")) is False
    write_digest(path)
    assert check_digest(path) is True
    path.write_bytes(b"abd")  # damaged after the digest was recorded
    assert check_digest(path) is False
    assert check_digest(tmp_path / "missing.pth", _sha(b"abc")) is False
    with pytest.raises(ValueError, match="expected"):
        check_digest(path, "xyz")


# --------------------------------------------------------------------------
# The cache: recorded digests, verification, re-fetching
# --------------------------------------------------------------------------


def test_download_records_digest_and_a_truncated_file_is_fetched_again(tmp_path, capsys):
    source, data = _source(tmp_path)
    cache = tmp_path / "cache"
    path = _fetch(cache, source.as_uri())
    assert path == cache / f"{NAME}_fold{FOLD}.pth"
    assert path.read_bytes() == data
    assert read_digest(path) == _sha(data)
    assert capsys.readouterr().err == ""

    path.write_bytes(data[: len(data) // 2])  # truncated (e.g. disk full, bad copy)
    again = _fetch(cache, source.as_uri())
    assert again == path
    assert again.read_bytes() == data  # the re-fetched file is the one used
    assert read_digest(path) == _sha(data)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("downloading it again.\n")
    assert str(path) in err and "damaged or truncated" in err
    assert _leftovers(cache) == []

    # Verified: served from the cache, silently, even with the source gone.
    source.unlink()
    assert _fetch(cache, source.as_uri()).read_bytes() == data
    assert capsys.readouterr().err == ""


def test_a_cached_file_without_digest_is_unverified_and_fetched_again(tmp_path, capsys):
    source, data = _source(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / f"{NAME}_fold{FOLD}.pth"
    target.write_bytes(b"PK left by an older version")
    path = _fetch(cache, source.as_uri(), progress=True)  # the note is not progress
    assert path.read_bytes() == data
    assert check_digest(path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"'{target}'" in err and "no recorded SHA-256" in err


def test_an_unverifiable_cached_file_and_no_network_says_how_to_vouch_for_it(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / f"{NAME}_fold{FOLD}.pth"
    target.write_bytes(b"PK placed by hand")
    missing = (tmp_path / "nowhere.pth").as_uri()
    with pytest.raises(OSError) as info:
        _fetch(cache, missing)
    message = str(info.value)
    assert missing in message and "by hand" in message
    assert f"sha256sum {target.name} > {target.name}.sha256" in message
    assert "attempts" not in message  # a missing file:// source is not retried
    assert target.read_bytes() == b"PK placed by hand"  # left alone
    assert _leftovers(cache) == []


def test_registry_digest_is_checked_when_filled(tmp_path, monkeypatch, capsys):
    source, data = _source(tmp_path)
    cache = tmp_path / "cache"
    _with_registry_digest(monkeypatch, _sha(data).upper())
    path = _fetch(cache, source.as_uri())
    assert path.read_bytes() == data

    # A cached file whose own sidecar agrees with it but the registry does not
    # is not trusted: the registry wins and the file is fetched again.
    path.write_bytes(b"PK something else")
    write_digest(path)
    assert _fetch(cache, source.as_uri()).read_bytes() == data
    assert "listed in the registry" in capsys.readouterr().err

    # Matching the registry is enough, even without a sidecar.
    Path(str(path) + ".sha256").unlink()
    source.unlink()
    assert _fetch(cache, source.as_uri()).read_bytes() == data


def test_a_download_that_does_not_match_the_registry_is_refused(tmp_path, monkeypatch):
    source, data = _source(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / f"{NAME}_fold{FOLD}.pth"
    target.write_bytes(b"PK damaged")
    expected = _sha(b"the official bytes")
    _with_registry_digest(monkeypatch, expected)
    with pytest.raises(OSError) as info:
        _fetch(cache, source.as_uri())
    message = str(info.value)
    assert f"'{target}'" in message
    assert expected in message and _sha(data) in message
    assert source.as_uri() in message
    assert "Delete the damaged cached copy" in message and "URL" in message
    assert target.read_bytes() == b"PK damaged"  # not replaced by the wrong file
    assert _leftovers(cache) == []
    assert not Path(str(target) + ".sha256").exists()


def test_cached_files_get_the_mode_of_any_new_file(tmp_path):
    source, _ = _source(tmp_path)
    for mask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        cache = tmp_path / f"cache{mask:o}"
        with _umask(mask):
            path = _fetch(cache, source.as_uri())
        assert path.stat().st_mode & 0o777 == mode
        assert Path(str(path) + ".sha256").stat().st_mode & 0o777 == mode


def test_progress_is_silent_when_stderr_is_not_a_terminal(tmp_path, capsys):
    source, _ = _source(tmp_path)
    assert not sys.stderr.isatty()
    _fetch(tmp_path / "cache", source.as_uri(), progress=True)
    assert capsys.readouterr().err == ""


def test_progress_on_a_terminal_is_throttled(tmp_path, capsys, monkeypatch):
    source, _ = _source(tmp_path, os.urandom(200_000))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(_transfer, "_CHUNK_BYTES", 1000)  # 200 chunks
    _fetch(tmp_path / "cache", source.as_uri(), progress=True)
    err = capsys.readouterr().err
    # 200 chunks in well under 0.5 s: the first draw and the final one only.
    assert err.count("\r") == 2
    assert err.endswith("0.2 MB / 0.2 MB (100%)\n")
    _fetch(tmp_path / "cache2", source.as_uri(), progress=False)
    assert capsys.readouterr().err == ""


def test_partial_files_are_removed_on_failure_and_interrupt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    page = tmp_path / "login.html"
    page.write_text("<!DOCTYPE html><html>Sign in</html>")
    with pytest.raises(OSError, match="web page"):
        _fetch(cache, page.as_uri())
    assert list(cache.iterdir()) == []

    def interrupted(source, out, resumable, progress, label):
        out.write(b"PK half of it")
        raise KeyboardInterrupt

    monkeypatch.setattr(_transfer, "_fetch_once", interrupted)
    source, _ = _source(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _fetch(cache, source.as_uri())
    assert list(cache.iterdir()) == []


def test_stale_partial_files_are_cleaned_not_reused(tmp_path):
    source, data = _source(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / f".{NAME}_fold{FOLD}.pth.killed.part"
    old.write_bytes(data[:1000])
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    fresh = cache / f".{NAME}_fold{FOLD}.pth.running.part"
    fresh.write_bytes(b"another process is writing this")
    path = _fetch(cache, source.as_uri())
    assert path.read_bytes() == data
    assert not old.exists()
    assert fresh.read_bytes() == b"another process is writing this"


# --------------------------------------------------------------------------
# Unusable cache directory
# --------------------------------------------------------------------------


def _cache_advice(cache):
    return (
        f"The weights cache directory '{cache}' is not writable or cannot be "
        "created (Permission denied). Choose another one with cache_dir= or the "
        "ANATCL_SKLEARN_CACHE environment variable."
    )


@pytest.mark.parametrize("simulate", ["mkstemp", "access"])
@pytest.mark.parametrize("exists", [True, False])
def test_read_only_cache_gives_the_same_advice_whether_or_not_it_exists(
    tmp_path, monkeypatch, exists, simulate
):
    source, _ = _source(tmp_path)
    parent = tmp_path / "readonly"
    parent.mkdir()
    cache = parent / "cache"
    locked = cache if exists else parent
    if exists:
        cache.mkdir()
    os.chmod(locked, 0o500)
    if os.geteuid() == 0:
        # Permissions do not bind root: simulate what a user would meet.
        if simulate == "mkstemp":
            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

            monkeypatch.setattr(_official.tempfile, "mkstemp", refuse)
        else:
            monkeypatch.setattr(_official.os, "access", lambda *args, **kwargs: False)
    try:
        with pytest.raises(OSError) as info:
            _fetch(cache, source.as_uri())
    finally:
        os.chmod(locked, 0o700)
    assert str(info.value) == _cache_advice(cache)
    assert not (cache / f"{NAME}_fold{FOLD}.pth").exists()
    if cache.exists():
        assert list(cache.iterdir()) == []


def test_a_verified_file_in_a_read_only_cache_is_still_served(tmp_path, monkeypatch):
    source, data = _source(tmp_path)
    cache = tmp_path / "cache"
    _fetch(cache, source.as_uri())
    monkeypatch.setattr(_official.os, "access", lambda *args, **kwargs: False)
    os.chmod(cache, 0o500)
    try:
        assert _fetch(cache, source.as_uri()).read_bytes() == data
    finally:
        os.chmod(cache, 0o700)


# --------------------------------------------------------------------------
# Retries and resuming over HTTP (a local server, 127.0.0.1 only)
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _server(data, behaviour, max_requests):
    """Serve ``data`` at /weights.pth for at most ``max_requests`` requests.

    behaviour(i, range_start) -> "drop" (200, full Content-Length, half the
    bytes, then close), "full" (200 with everything), "range" (206 from
    range_start) or an HTTP error code.
    """
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            rng = self.headers.get("Range")
            seen.append(rng)
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            start = int(match.group(1)) if match else None
            action = behaviour(len(seen) - 1, start)
            if isinstance(action, int):
                self.send_error(action)
                return
            if action == "range":
                body = data[start:]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                body = data if action == "full" else data[: len(data) // 2]
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - (start if action == "range" else 0)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5

    def serve():
        for _ in range(max_requests):
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/weights.pth", seen
    finally:
        thread.join(timeout=3 * server.timeout * max_requests)
        server.server_close()


def test_a_dropped_download_resumes_with_a_range_request(tmp_path):
    data = os.urandom((5 << 20) // 2 + 3)
    cache = tmp_path / "cache"

    def behaviour(i, start):
        return "drop" if i == 0 else "range"

    with _server(data, behaviour, 2) as (url, seen):
        path = _fetch(cache, url)
    assert path.read_bytes() == data
    assert seen == [None, f"bytes={len(data) // 2}-"]
    assert read_digest(path) == _sha(data)
    assert _leftovers(cache) == []


def test_a_server_ignoring_range_restarts_from_zero(tmp_path):
    data = os.urandom(300_001)
    cache = tmp_path / "cache"
    with _server(data, lambda i, start: "drop" if i == 0 else "full", 2) as (url, seen):
        path = _fetch(cache, url)
    assert path.read_bytes() == data  # not the first half twice
    assert seen == [None, f"bytes={len(data) // 2}-"]


def test_downloads_retry_with_backoff_then_fail_leaving_nothing(tmp_path, monkeypatch):
    data = os.urandom(300_000)
    cache = tmp_path / "cache"
    pauses = []
    monkeypatch.setattr(_transfer, "_BACKOFF_S", (1.0, 2.0))
    monkeypatch.setattr(
        _transfer,
        "time",
        SimpleNamespace(sleep=pauses.append, time=time.time, monotonic=time.monotonic),
    )
    with _server(data, lambda i, start: "drop", 3) as (url, seen), pytest.raises(OSError) as info:
        _fetch(cache, url)
    assert len(seen) == 3 and pauses == [1.0, 2.0]
    message = str(info.value)
    assert "after 3 attempts" in message and f"({len(data) // 2} of {len(data)} bytes)" in message
    assert list(cache.iterdir()) == []


def test_a_client_error_is_not_retried(tmp_path):
    cache = tmp_path / "cache"
    with _server(b"", lambda i, start: 404, 1) as (url, seen), pytest.raises(OSError, match="404") as info:
        _fetch(cache, url)
    assert len(seen) == 1 and "attempts" not in str(info.value)
    assert list(cache.iterdir()) == []


# --------------------------------------------------------------------------
# Honest refusals when loading a checkpoint
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\n  <!DOCTYPE html>\n<html><body>Sign in</body></html>", "it looks like an HTML page"),
        (b"<html><head><title>404</title></head></html>", "it looks like an HTML page"),
        (b"Access denied: you need to log in first\n", "it is a text file starting with 'Access denied"),
        (b"", "it is empty"),
        (bytes([0, 1, 2, 250, 251, 252, 253, 254, 255]), "it starts with bytes 00 01 02 fa fb fc fd fe"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "Git LFS pointer"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, content, says):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    for load in (load_checkpoint, lambda p: _safe_torch_load(p, "cpu")):
        with pytest.raises(ValueError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"'{path}' is not a torch checkpoint: ")
        assert says in message
        assert "Unsupported operand" not in message and "safety" not in message


def test_legacy_pickle_checkpoints_still_load(tmp_path):
    state = AnatCLModel().state_dict()
    path = tmp_path / "legacy.pth"
    torch.save({"model": state}, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    loaded = load_checkpoint(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


class _System:
    """Unpickling this runs a shell command (os.system) that creates a marker."""

    def __init__(self, marker):
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


class _Subprocess:
    def __init__(self, marker):
        self.argv = ["touch", str(marker)]

    def __reduce__(self):
        import subprocess

        return (subprocess.call, (self.argv,))


@pytest.mark.parametrize(
    ("payload", "called"), [(_System, os.system.__module__ + ".system"), (_Subprocess, "subprocess.call")]
)
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_runs_code_names_the_call_and_never_runs(tmp_path, payload, called, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    checkpoint = {"model": payload(marker)}
    if writer == "torch.save":
        torch.save(checkpoint, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(checkpoint, fh, protocol=2)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"'{path}'" in message
    # torch.save pickles with protocol 2, which spells subprocess "commands":
    # the message gives the Python 3 name.
    assert f"it asks to call {called}" in message
    assert "which anatcl_sklearn never does" in message
    assert "weights_only" not in message  # torch's "re-run with weights_only=False"
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()
    with pytest.raises(ValueError, match=re.escape(called)):
        _safe_torch_load(path, "cpu")
    assert not marker.exists()



@pytest.mark.slow
@pytest.mark.parametrize("payload", [_System, _Subprocess])
def test_the_hostile_payloads_are_live(tmp_path, payload):
    """Control for the test above: the payloads really run when unpickled, so its "never runs"
    means something. They run in a child process: glibc's system() called from the test process,
    after ~1,400 tests and OpenVINO's thread pools, once segfaulted inside sigprocmask (the
    control, never the library, which refuses the payload before any call)."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": payload(marker)}, fh, protocol=2)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
                    str(path)], check=True, timeout=60)
    assert marker.exists()


def test_non_finite_weights_are_refused_with_their_names(tmp_path):
    state = AnatCLModel().state_dict()
    state["head.0.bias"][3] = float("nan")
    state["encoder.conv1.weight"].view(-1)[0] = float("inf")
    with pytest.raises(ValueError) as info:
        load_checkpoint({"model": state})
    message = str(info.value)
    assert "2 tensor(s) hold NaN or infinite values" in message
    assert "'encoder.conv1.weight'" in message and "'head.0.bias'" in message

    path = tmp_path / "diverged.pth"
    for key in list(state)[:8]:
        if state[key].is_floating_point():
            state[key].view(-1)[-1] = float("-inf")
    torch.save({"model": state}, path)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"'{path}'" in message
    count = int(re.search(r"(\d+) tensor\(s\) hold NaN", message).group(1))
    assert count > 5 and f"({count - 5} more)" in message


# --------------------------------------------------------------------------
# Damaged downloads are refused before they enter the cache
# --------------------------------------------------------------------------


def _zip_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.arange(50_000, dtype=torch.float32)}}, path)
    return path.read_bytes()


def test_a_damaged_download_is_refused_then_fetched_again_once(tmp_path, capsys, monkeypatch):
    good = _zip_checkpoint(tmp_path)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # a flipped byte inside the stored tensor: CRC fails
    source = tmp_path / "weights.pth"
    served = []
    real = _official.fetch_with_retries

    def flaky(src, out, progress, label):
        served.append(src)
        source.write_bytes(bytes(bad) if len(served) == 1 else good)
        return real(src, out, progress, label)

    monkeypatch.setattr(_official, "fetch_with_retries", flaky)
    cache = tmp_path / "cache"
    path = _fetch(cache, source.as_uri())
    assert len(served) == 2 and path.read_bytes() == good
    assert read_digest(path) == _sha(good)
    assert "damaged" in capsys.readouterr().err

    # damaged every time: refused, nothing cached under its own digest
    monkeypatch.setattr(_official, "fetch_with_retries",
                        lambda s, o, p, label: o.write(bytes(bad)))
    cache2 = tmp_path / "cache2"
    with pytest.raises(OSError, match="damaged twice"):
        _fetch(cache2, source.as_uri())
    assert not (cache2 / f"{NAME}_fold{FOLD}.pth").exists()
    assert read_digest(cache2 / f"{NAME}_fold{FOLD}.pth") is None
    assert _leftovers(cache2) == []


def test_the_finite_check_of_weights_sees_every_tensor_and_no_overflow():
    """The norms' shortcut: a NaN or inf in any floating tensor (float16 too) is refused by
    name; values whose squares overflow float32 (1e30) are finite and accepted."""
    import torch

    from anatcl_sklearn.models._checkpoint import _check_finite

    state = {"a.weight": torch.ones(3, 3), "b.weight": torch.full((4,), 1e30),
             "c.weight": torch.zeros(2, dtype=torch.float16), "steps": torch.tensor(3),
             "empty": torch.ones(0)}
    _check_finite(state, "w.pth")
    for name, bad in (("a.weight", float("nan")), ("c.weight", float("inf"))):
        broken = dict(state)
        broken[name] = state[name].clone()
        broken[name].view(-1)[1] = bad
        with pytest.raises(ValueError, match=rf"1 tensor\(s\) hold NaN.*'{name}'"):
            _check_finite(broken, "w.pth")
