"""AnatCLEmbedder on scans as pipelines write them: conform=True, orientation checks against the
fitted grid, one image with frozen weights, numpy scalars as parameters."""

import pickle
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, ParameterGrid
from sklearn.pipeline import make_pipeline

from anatcl_sklearn import OPENBHB_AFFINE, OPENBHB_SHAPE, AnatCLEmbedder, GridWarning
from anatcl_sklearn.models import AnatCLModel

CAT12_BB12_AFFINE = np.array([[-1.5, 0, 0, 84], [0, 1.5, 0, -120], [0, 0, 1.5, -72], [0, 0, 0, 1.0]])
PAD = ((4, 4), (4, 4), (0, 8))
# A small field of view, so that full-size ResNet passes stay cheap: CAT12's bb12 grid cropped
# to 20x24x20 voxels, conformed to a matching 28x32x28 crop of OpenBHB's grid.
SMALL_BB12 = (20, 24, 20)
SMALL_TARGET_SHAPE = (28, 32, 28)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A checkpoint of seeded random weights (no grid recorded: taken for OpenBHB's)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    torch.save({"model": AnatCLModel().state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("scans")
    data = rng.random((3, *SMALL_BB12)).astype(np.float32)
    paths = []
    for i, d in enumerate(data):
        p = folder / f"mwp1sub-{i}.nii.gz"
        nib.save(nib.Nifti1Image(d, CAT12_BB12_AFFINE), p)
        paths.append(str(p))
    return data, paths


def _small_grid_weights(path, shape, affine):
    """Weights that record a training grid in their opts (as released-layout checkpoints can)."""
    torch.manual_seed(0)
    model = AnatCLModel()
    opts = {"input_shape": list(shape), "input_affine": np.asarray(affine).tolist()}
    torch.save({"model": model.state_dict(), "opts": opts}, path)
    return str(path)


def test_conform_true_embeds_cat12_bb12_maps_as_their_zero_padded_copies(weights, tmp_path):
    # full-size grid: the released weights' target, conformed batch by batch
    rng = np.random.default_rng(1)
    bb12 = rng.random((2, 113, 137, 113)).astype(np.float32)
    paths = []
    for i, d in enumerate(bb12):
        nib.save(nib.Nifti1Image(d, CAT12_BB12_AFFINE), tmp_path / f"s{i}.nii")
        paths.append(tmp_path / f"s{i}.nii")
    padded = np.stack([np.pad(d, PAD) for d in bb12])
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)  # conformed: on the weights' grid
        est = AnatCLEmbedder(pretrained=weights, conform=True, batch_size=2, verbose=0)
        Z = est.fit(paths).transform(paths)
    assert est.input_shape_ == OPENBHB_SHAPE
    np.testing.assert_array_equal(est.input_affine_, OPENBHB_AFFINE)
    ref = AnatCLEmbedder(pretrained=weights, batch_size=2, verbose=0).fit(padded).transform(padded)
    np.testing.assert_array_equal(Z, ref)


def test_grid_warning_for_pretrained_weights_names_conform_and_bb16(weights, scans):
    _, paths = scans
    with pytest.warns(GridWarning, match=r"20x24x20 voxels \(LAS, 1\.5x1\.5x1\.5 mm voxels, origin "
                                         r"\(84, -120, -72\)\).*121x145x121.*conform=True.*"
                                         r"cat\.extopts\.bb = 16"):
        AnatCLEmbedder(pretrained=weights, verbose=0).fit(paths)


def test_conform_targets_the_grid_the_weights_record(tmp_path, scans):
    data, paths = scans
    target_affine = np.array(OPENBHB_AFFINE)  # a crop of OpenBHB's grid
    w = _small_grid_weights(tmp_path / "small.pt", SMALL_TARGET_SHAPE, target_affine)
    est = AnatCLEmbedder(pretrained=w, conform=True, verbose=0).fit(paths)
    assert est.input_shape_ == SMALL_TARGET_SHAPE
    padded = [np.pad(d, ((4, 4), (4, 4), (0, 8)))[:28, :32, :28] for d in data]
    np.testing.assert_allclose(est.transform(paths),
                               est.transform(np.stack(padded)), rtol=1e-6, atol=1e-6)
    # weights recording a grid without its affine: nothing to conform to, said plainly
    torch.save({"model": AnatCLModel().state_dict(), "opts": {"input_shape": [28, 32, 28]}},
               tmp_path / "noaff.pt")
    with pytest.raises(ValueError, match="record a training grid of 28x32x28 voxels without its "
                                         "affine"):
        AnatCLEmbedder(pretrained=str(tmp_path / "noaff.pt"), conform=True, verbose=0).fit(paths)


def test_conform_with_mixed_orientations_gives_each_subjects_own_embedding(tmp_path, scans):
    data, paths = scans
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, data.shape[1] - 1
    ras_path = tmp_path / "ras.nii.gz"
    nib.save(nib.Nifti1Image(data[0][::-1].copy(), CAT12_BB12_AFFINE @ flip), ras_path)
    w = _small_grid_weights(tmp_path / "small.pt", SMALL_TARGET_SHAPE, OPENBHB_AFFINE)
    mixed = [paths[0], str(ras_path)]
    with pytest.raises(ValueError, match=r"differ in orientation: X\[1\] '.*ras\.nii\.gz' is RAS.*"
                                         r"X\[0\] '.*mwp1sub-0\.nii\.gz' is LAS"):
        AnatCLEmbedder(pretrained=w, verbose=0).fit(mixed)
    est = AnatCLEmbedder(pretrained=w, conform=True, verbose=0).fit(mixed)
    Z = est.transform(mixed)
    np.testing.assert_array_equal(Z[0], Z[1])  # one brain, stored two ways


@pytest.mark.usefixtures("narrow_resnet")
def test_transform_refuses_another_orientation_than_fit_unless_conform(tmp_path, scans):
    data, paths = scans
    est = AnatCLEmbedder(max_epochs=1, batch_size=3, verbose=0, random_state=0,
                         method="simclr").fit(paths)
    np.testing.assert_array_equal(est.input_affine_, CAT12_BB12_AFFINE)
    flipped = tmp_path / "flipped.nii.gz"
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, data.shape[1] - 1
    nib.save(nib.Nifti1Image(data[0][::-1].copy(), CAT12_BB12_AFFINE @ flip), flipped)
    with pytest.raises(ValueError, match=r"differ in orientation from those this embedder was "
                                         r"fitted on: .*flipped\.nii\.gz is on \(RAS.*conform=True"):
        est.transform([flipped])
    Z = est.set_params(conform=True).transform([flipped, paths[0]])
    np.testing.assert_array_equal(Z[0], Z[1])
    # conform=True needs a fitted grid with an affine: arrays have none
    arrays = AnatCLEmbedder(max_epochs=0, verbose=0, method="simclr").fit(data)
    with pytest.raises(ValueError, match="fitted on images without an affine"):
        arrays.set_params(conform=True).transform(paths)


def test_a_frozen_encoder_fits_and_embeds_a_single_image(weights, scans):
    data, paths = scans
    est = AnatCLEmbedder(pretrained=weights, verbose=0).fit(paths[:1])
    one = est.transform(paths[:1])
    assert one.shape == (1, 512)
    np.testing.assert_allclose(one, est.transform(paths)[:1], rtol=1e-5, atol=1e-6)
    # batch_size=1 is fine for a frozen encoder, and gives the same embeddings
    single = AnatCLEmbedder(pretrained=weights, batch_size=1, verbose=0).fit(paths)
    np.testing.assert_allclose(single.transform(paths), est.transform(paths), rtol=1e-5,
                               atol=1e-5)
    # training still needs two subjects and a batch of two
    with pytest.raises(ValueError, match="at least 2 images to contrast when it trains; got 1"):
        AnatCLEmbedder(method="simclr", verbose=0).fit(data[:1])
    with pytest.raises(ValueError, match=r"'batch_size' parameter of AnatCLEmbedder must be an int in the range \[2, inf\) when it trains"):
        AnatCLEmbedder(method="simclr", batch_size=1, verbose=0).fit(data)
    with pytest.raises(ValueError, match=r"'batch_size' parameter of AnatCLEmbedder must be an int in the range \[2, inf\) when it trains"):
        AnatCLEmbedder(pretrained=weights, finetune=True, method="simclr", batch_size=1,
                       verbose=0).fit(data)


@pytest.mark.usefixtures("narrow_resnet")
def test_numpy_scalars_are_accepted_wherever_python_numbers_are(small_brains):
    X = small_brains.images[:8]
    meta = dict(age=small_brains.age[:8], anatomy=small_brains.anatomy[:8])
    # what ParameterGrid over numpy arrays yields
    grid = list(ParameterGrid({"batch_size": np.array([4]), "max_epochs": np.array([1]),
                               "lr": np.array([1e-3], dtype=np.float32),
                               "sigma": np.array([2.0], dtype=np.float32),
                               "lr_step": np.array([1]), "early_stopping": np.array([3]),
                               "verbose": np.array([0]), "num_workers": np.array([0]),
                               "random_state": np.array([0]), "channels_last": np.array([False])}))
    params = grid[0]
    assert isinstance(params["batch_size"], np.integer)
    est = AnatCLEmbedder(**params).fit(X, **meta)
    ref = AnatCLEmbedder(batch_size=4, max_epochs=1, lr=float(np.float32(1e-3)),
                         sigma=float(np.float32(2.0)), lr_step=1, early_stopping=3, verbose=0,
                         random_state=0).fit(X, **meta)
    np.testing.assert_array_equal(est.transform(X), ref.transform(X))
    assert pickle.loads(pickle.dumps(est)).transform(X[:2]).shape == (2, est._n_features_out)


@pytest.mark.usefixtures("narrow_resnet")
def test_grid_search_over_numpy_arrays_of_batch_sizes(small_brains):
    import sklearn

    X = small_brains.images[:12]
    with sklearn.config_context(enable_metadata_routing=True):
        emb = AnatCLEmbedder(max_epochs=1, verbose=0, random_state=0, method="simclr")
        pipe = make_pipeline(emb, Ridge())
        search = GridSearchCV(pipe, {"anatclembedder__batch_size": np.array([3, 4])}, cv=2,
                              error_score="raise")
        search.fit(X, small_brains.age[:12])
    assert search.best_params_["anatclembedder__batch_size"] in (3, 4)
