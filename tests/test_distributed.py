"""Tests of anatcl_sklearn.distributed: gathered losses and DDP steps against one process.

Multi-process tests run 2 CPU processes with the gloo backend on 127.0.0.1 only (a free port
found by binding to port 0). Workers write what they computed to ``tmp_path``; the parent
computes the single-process reference with the public losses and compares.
"""

import datetime
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from anatcl_sklearn.distributed import DistributedContrastiveLoss, gather_with_grad
from anatcl_sklearn.distributed._cli import build_parser, load_data
from anatcl_sklearn.losses import (
    age_kernel,
    anatcl_loss,
    expw_loss,
    simclr_loss,
    yaware_loss,
)
from anatcl_sklearn.models import AnatCLModel, load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
WORLD = 2

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

# (method, loss parameters): every objective, both descriptors, a one-term AnatCL.
CASES = [
    ("anatcl", {"descriptor": "global"}),
    ("anatcl", {"descriptor": "local", "lambda_age": 0.5, "lambda_anat": 2.0, "temperature": 0.2}),
    ("anatcl", {"lambda_anat": 0.0, "sigma": 4.0}),
    ("yaware", {"sigma": 5.0, "kernel": "cauchy"}),
    ("expw", {"sigma": 5.0}),
    ("simclr", {"temperature": 0.5}),
]
# Subjects held by rank 0 and rank 1.
LAYOUTS = {"equal": (4, 4), "unequal": (3, 5)}


# ---------------------------------------------------------------------------------------------
# Helpers shared by the parent and the spawned workers
# ---------------------------------------------------------------------------------------------


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_env():
    """Keep gloo on the loopback interface (it otherwise picks the hostname's address)."""
    names = [name for _, name in socket.if_nameindex()] if hasattr(socket, "if_nameindex") else []
    loopback = next((n for n in names if n.startswith("lo")), None)
    return {"GLOO_SOCKET_IFNAME": loopback} if loopback else {}


def _init(rank, port):
    os.environ.update(_loopback_env())
    torch.set_num_threads(1)  # two processes on a small machine
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )


def _global_data(n, seed, n_views=2, d=6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, n_views, d)) * rng.uniform(0.5, 2.0, size=(n, n_views, 1))
    age = rng.uniform(20, 80, size=n)
    anatomy = rng.uniform(0, 1, size=(n, 7, 3))
    return torch.from_numpy(z), torch.from_numpy(age), torch.from_numpy(anatomy)


def _reference_loss(method, params, z, age, anatomy):
    """The single-process loss, through the public functions."""
    temperature = params.get("temperature", 0.1)
    if method == "anatcl":
        return anatcl_loss(z, age, anatomy, **params)
    if method == "simclr":
        return simclr_loss(z, temperature=temperature)
    weights = age_kernel(age, sigma=params.get("sigma", 2.0), kind=params.get("kernel", "rbf"))
    fn = yaware_loss if method == "yaware" else expw_loss
    return fn(z, weights, temperature=temperature)


def _spawn(worker, tmp_path, *args):
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(_free_port(), str(tmp_path), *args), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


# ---------------------------------------------------------------------------------------------
# (a) losses and gradients with respect to the local embeddings
# ---------------------------------------------------------------------------------------------


def _loss_checks(rank):
    results = {}
    for layout, sizes in LAYOUTS.items():
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        for i, (method, params) in enumerate(CASES):
            z, age, anatomy = _global_data(sum(sizes), seed=i)
            z_local = z[rows].clone().requires_grad_(True)
            loss = DistributedContrastiveLoss(method, **params)(z_local, age[rows], anatomy[rows])
            loss.backward()
            results[layout, i] = (loss.item(), z_local.grad.clone())

    # Cross-rank gradients: rank r's loss weighs the gathered rows by r + 1, so every row's
    # gradient must be 1 + 2 = 3 on its owner, whichever rank it lives on.
    x = torch.full((1 + 2 * rank, 3), float(rank + 1), requires_grad=True)
    gathered = gather_with_grad(x)
    ((rank + 1) * gathered).sum().backward()
    results["gathered"] = gathered.detach()
    results["gathered_grad"] = x.grad.clone()

    # Mismatched inputs must raise on every rank instead of hanging.
    errors = {}
    try:
        gather_with_grad(torch.zeros(2, 3 + rank))
    except ValueError as exc:
        errors["shape"] = str(exc)
    z, age, anatomy = _global_data(4, seed=0)
    bad_age = age[:2] if rank == 0 else age[:1]  # rank 1 passes one age for two subjects
    try:
        DistributedContrastiveLoss("anatcl")(z[:2], bad_age, anatomy[:2])
    except (ValueError, RuntimeError) as exc:
        errors["age"] = f"{type(exc).__name__}: {exc}"
    results["errors"] = errors
    return results


def _worker(rank, port, out):
    """Every 2-process check in one spawn: starting the processes costs more than the checks."""
    _init(rank, port)
    results = {"loss": _loss_checks(rank), "ddp": _ddp_checks(rank)}
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    return _spawn(_worker, tmp_path_factory.mktemp("spawned"))


@pytest.fixture(scope="module")
def loss_results(spawned):
    return [result["loss"] for result in spawned]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_loss_and_z_gradient_match_single_process(loss_results, layout, case):
    method, params = CASES[case]
    sizes = LAYOUTS[layout]
    z, age, anatomy = _global_data(sum(sizes), seed=case)
    z = z.clone().requires_grad_(True)
    expected = _reference_loss(method, params, z, age, anatomy)
    expected.backward()

    losses = [loss_results[r][layout, case][0] for r in range(WORLD)]
    # The mean over ranks of the returned values is the global loss (what DDP's averaging sees).
    assert np.mean(losses) == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)
    for rank in range(WORLD):
        start = sum(sizes[:rank])
        grad = loss_results[rank][layout, case][1]
        # z's gradient sums all ranks' losses: W times the single-process slice.
        torch.testing.assert_close(grad / WORLD, z.grad[start : start + sizes[rank]],
                                   rtol=1e-10, atol=1e-12)
    if layout == "equal":  # equal shards: each rank returns the mean over its own anchors
        assert not np.allclose(losses[0], losses[1])


def test_gather_with_grad_concatenates_and_sums_cross_rank_gradients(loss_results):
    expected = torch.tensor([[1.0] * 3] + [[2.0] * 3] * 3)
    for rank in range(WORLD):
        torch.testing.assert_close(loss_results[rank]["gathered"], expected)
        grad = loss_results[rank]["gathered_grad"]
        assert grad.shape == (1 + 2 * rank, 3)
        torch.testing.assert_close(grad, torch.full_like(grad, 3.0))


def test_bad_inputs_raise_on_every_rank(loss_results):
    for rank in range(WORLD):
        errors = loss_results[rank]["errors"]
        assert "same trailing shape" in errors["shape"]
        assert "rank 0: shape (2, 3)" in errors["shape"] and "rank 1: shape (2, 4)" in errors["shape"]
    assert loss_results[1]["errors"]["age"].startswith("ValueError: age has 1 values")
    assert loss_results[0]["errors"]["age"].startswith("RuntimeError")
    assert "rank(s) [1]" in loss_results[0]["errors"]["age"]


# ---------------------------------------------------------------------------------------------
# (b) one DDP step of the real model: parameter gradients equal the single-process ones
# ---------------------------------------------------------------------------------------------

N_GLOBAL = 4


def _model_batch():
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.uniform(0, 1, size=(N_GLOBAL, 1, 16, 16, 16)))
    age = torch.from_numpy(rng.uniform(20, 80, N_GLOBAL))
    return x, age, torch.from_numpy(rng.uniform(0, 1, (N_GLOBAL, 68, 3)))


def _model():
    torch.manual_seed(0)
    # float64 so that the comparison is tight; eval mode so that BatchNorm uses running
    # statistics, the same whether a sample is normalised with its shard or the global batch.
    return AnatCLModel("resnet18").double().eval()


def _grads(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def _relative_errors(grads, reference):
    return {name: float((g - reference[name]).abs().max() / reference[name].abs().max())
            for name, g in grads.items() if reference[name].abs().max() > 0}


def _ddp_checks(rank):
    x, age, anatomy = _model_batch()
    n = N_GLOBAL // WORLD
    rows = slice(rank * n, (rank + 1) * n)

    reference_model = _model()
    z = reference_model(x).unsqueeze(1).expand(-1, 2, -1)
    reference_loss = anatcl_loss(z, age, anatomy)
    reference_loss.backward()
    reference = _grads(reference_model)

    model = _model()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    z_local = ddp(x[rows]).unsqueeze(1).expand(-1, 2, -1)
    loss = DistributedContrastiveLoss("anatcl")(z_local, age[rows], anatomy[rows])
    loss.backward()
    errors = _relative_errors(_grads(model), reference)
    loss_mean = loss.detach().clone()
    dist.all_reduce(loss_mean)

    # The same step with the local-only loss (no gather): what the test must tell apart.
    model.zero_grad()
    local_z = ddp(x[rows]).unsqueeze(1).expand(-1, 2, -1)
    anatcl_loss(local_z, age[rows], anatomy[rows]).backward()
    local_only = _relative_errors(_grads(model), reference)

    return {"errors": errors, "local_only": local_only, "loss": float(loss_mean) / WORLD,
            "reference_loss": reference_loss.item()}


def test_ddp_step_parameter_gradients_match_single_process(spawned):
    results = [result["ddp"] for result in spawned]
    n_params = len(list(AnatCLModel("resnet18").parameters()))
    for result in results:
        assert result["loss"] == pytest.approx(result["reference_loss"], rel=1e-12)
        assert len(result["errors"]) == n_params
        worst = max(result["errors"], key=result["errors"].get)
        assert result["errors"][worst] < 1e-9, f"{worst}: relative error {result['errors'][worst]:.3g}"
        # Without the all-gather the gradients are far off: the comparison is sensitive.
        assert max(result["local_only"].values()) > 1e-2


# ---------------------------------------------------------------------------------------------
# (c) the torchrun command line on 2 processes
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_cli_trains_through_the_estimator_and_writes_both_formats(tmp_path):
    output = tmp_path / "run"
    released = tmp_path / "released.pth"
    env = {**os.environ, **_loopback_env(), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={WORLD}",
        "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
        "-m", "anatcl_sklearn.distributed", "--synthetic", "8", "--shape", "16", "16", "16",
        "--epochs", "1", "--batch-size", "4", "--num-workers", "0", "--seed", "3",
        "--output", str(output), "--released-checkpoint", str(released),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "DistributedDataParallel over 2 processes (gloo), global batch 4" in done.stdout
    assert f"saved model: {output} (1 epochs)" in done.stdout

    from anatcl_sklearn.models import load_model_dir

    model, config = load_model_dir(output)  # safetensors + JSON: nothing unpickled
    assert config["training"]["epochs_run"] == 1 and config["training"]["batch_size"] == 4
    assert "synthetic brains" in config["training"]["data"]
    assert "synthetic brains" in (output / "README.md").read_text()
    assert list((output / "checkpoints").glob("anatcl-run-*.pt"))  # resumable per epoch
    released_model = load_checkpoint(released)  # weights-only loading of the released layout
    saved = torch.load(released, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1 and saved["opts"].batch_size == 4
    assert saved["opts"].input_shape == [16, 16, 16]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(released_model.state_dict()[key], value, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# One process (no process group): the same code, fast checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_single_process_equals_public_losses(case):
    method, params = CASES[case]
    z, age, anatomy = _global_data(6, seed=case)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    loss = DistributedContrastiveLoss(method, **params)(z1, age, anatomy)
    expected = _reference_loss(method, params, z2, age, anatomy)
    (loss + expected).backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-12)


def test_gather_with_grad_is_identity_without_process_group():
    x = torch.ones(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    with pytest.raises(TypeError, match="torch.Tensor"):
        gather_with_grad(np.ones(3))
    with pytest.raises(ValueError, match="between 1 and 6 dimensions"):
        gather_with_grad(torch.tensor(1.0))


def test_loss_parameter_errors():
    with pytest.raises(ValueError, match="'method' parameter of \\w+ must be a str among"):
        DistributedContrastiveLoss("l1")
    with pytest.raises(TypeError, match=r"parameter\(s\) \['sigma'\]; it accepts \['temperature'\]"):
        DistributedContrastiveLoss("simclr", sigma=2.0)
    with pytest.raises(ValueError, match="both 0"):
        DistributedContrastiveLoss("anatcl", lambda_age=0, lambda_anat=0)
    with pytest.raises(ValueError, match=r"'temperature' parameter of \w+ must be a float in the range \(0\.0, inf\)"):
        DistributedContrastiveLoss("yaware", temperature=0.0)


def test_loss_input_errors():
    z, age, anatomy = _global_data(4, seed=0)
    with pytest.raises(ValueError, match="age is required"):
        DistributedContrastiveLoss("yaware")(z)
    with pytest.raises(ValueError, match="anatomy is required"):
        DistributedContrastiveLoss("anatcl")(z, age)
    with pytest.raises(ValueError, match="at least 2 views"):
        DistributedContrastiveLoss("simclr")(z[:, :1])
    with pytest.raises(ValueError, match="at least 2 rows"):
        DistributedContrastiveLoss("yaware")(z[:1, :1], age[:1])
    with pytest.raises(ValueError, match=r"got shape \(4, 12\)"):
        DistributedContrastiveLoss("simclr")(z.reshape(4, 12))
    with pytest.raises(ValueError, match="non-negative"):
        DistributedContrastiveLoss("anatcl")(z, age, -anatomy)


def test_loss_leaves_inputs_unchanged():
    z, age, anatomy = _global_data(4, seed=1)
    copies = [t.clone() for t in (z, age, anatomy)]
    DistributedContrastiveLoss("anatcl", descriptor="local")(z, age, anatomy)
    for before, after in zip(copies, (z, age, anatomy)):
        assert torch.equal(before, after)


# ---------------------------------------------------------------------------------------------
# Command-line parsing and data reading (no training)
# ---------------------------------------------------------------------------------------------


def test_cli_defaults_are_the_paper_settings():
    args = build_parser().parse_args(["--synthetic", "4"])
    assert (args.epochs, args.batch_size, args.lr, args.lr_step, args.lr_gamma, args.temperature) == \
        (300, 32, 1e-4, 10, 0.9, 0.1)
    assert args.method == "anatcl" and args.arch == "resnet18" and not args.sync_bn
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--synthetic", "4", "--openbhb", "/data"])  # one source only


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "argument --lr: must be a float in the range (0.0, inf); got -1"),
    (["--batch-size", "0"], "argument --batch-size: must be >= 2; got 0"),
    (["--verbose", "-1"], "argument --verbose: must be >= 0 and <= 2; got -1"),
    (["--epochs", "x"], "argument --epochs: invalid int: 'x'"),
    (["--sigma", "nan"], "argument --sigma: must be a float in the range (0.0, inf); got nan"),
    (["--lambda-age", "-1"], "argument --lambda-age: must be a float in the range [0.0, inf); got -1"),
])
def test_cli_numbers_are_range_checked_by_argparse(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--synthetic", "4", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_refuses_bad_outputs_before_reading_any_data(tmp_path, capsys):
    from anatcl_sklearn.distributed._cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, message in (
        (["--output", str(afile)], "a file is in the way"),
        (["--released-checkpoint", str(tmp_path)], "a folder; give a file path"),
        (["--released-checkpoint", str(tmp_path / "no" / "x.pth")], "is missing or not writable"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["--openbhb", str(tmp_path / "not-read"), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("present", ["README.md", "config.json", "model.safetensors"])
def test_train_output_needs_force_for_any_of_the_three_files(tmp_path, capsys, present):
    from anatcl_sklearn.distributed._cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / present).write_text("the user's own file\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--openbhb", str(tmp_path / "not-read"), "--output", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and present in err and "--force" in err
    assert (out / present).read_text() == "the user's own file\n"


def test_cli_reads_an_image_table(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", rng.uniform(size=(16, 16, 16)).astype(np.float32))
    (tmp_path / "subjects.csv").write_text("path,age\ns0.npy,20\ns1.npy,30.5\ns2.npy,41\n")
    np.save(tmp_path / "anatomy.npy", rng.uniform(size=(3, 68, 3)))
    parser = build_parser()
    args = parser.parse_args(["--images", str(tmp_path / "subjects.csv"), "--anatomy",
                              str(tmp_path / "anatomy.npy"), "--max-subjects", "2"])
    images, age, anatomy, what = load_data(args)
    assert images == [str(tmp_path / "s0.npy"), str(tmp_path / "s1.npy")]
    np.testing.assert_array_equal(age, [20.0, 30.5])
    assert anatomy.shape == (2, 68, 3) and "subjects.csv" in what

    # a table with only a path column is read by its extension, not a delimiter guess
    (tmp_path / "paths.csv").write_text("path\ns0.npy\ns1.npy\n")
    images, age, _, _ = load_data(parser.parse_args(["--images", str(tmp_path / "paths.csv")]))
    assert images == [str(tmp_path / "s0.npy"), str(tmp_path / "s1.npy")] and age is None
    (tmp_path / "paths.tsv").write_text("path\tage\ns0.npy\t20\n")
    images, age, _, _ = load_data(parser.parse_args(["--images", str(tmp_path / "paths.tsv")]))
    assert images == [str(tmp_path / "s0.npy")] and age.tolist() == [20.0]
    (tmp_path / "bad.csv").write_text("file,age\ns0.npy,20\n")
    with pytest.raises(ValueError, match=r"no 'path' column .* found \['file', 'age'\]"):
        load_data(parser.parse_args(["--images", str(tmp_path / "bad.csv")]))


def test_train_command_lives_in_cli_and_the_old_paths_are_aliases(capsys):
    import anatcl_sklearn.distributed as distributed
    from anatcl_sklearn.cli import _train
    from anatcl_sklearn.distributed import _cli
    from anatcl_sklearn.losses._distributed import DistributedContrastiveLoss as Loss
    from anatcl_sklearn.losses._gather import gather_with_grad as gather

    assert distributed.DistributedContrastiveLoss is Loss and distributed.gather_with_grad is gather
    assert _cli.build_parser is _train.build_parser and _cli.load_data is _train.load_data
    with pytest.raises(SystemExit) as exit_info:
        _train.main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: anatcl-sklearn train")
    with pytest.raises(SystemExit):
        _cli.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m anatcl_sklearn.distributed")
