"""scikit-learn's common estimator checks on AnatCLEmbedder.

The common checks feed 2-D tabular arrays (n_samples, n_features). An AnatCLEmbedder takes 3-D
images, (n, D, H, W), and refuses a 2-D array on purpose: read as images it would be a batch of
1-pixel-high volumes, a silent misuse. Following nilearn, we keep ``two_d_array=True`` (so the
checks run rather than being skipped silently) and list, with a reason, the checks that cannot
apply; every other check must pass. Our own image-based versions of the checks that matter
(fit/transform, clone, pickling, reproducibility, errors) live in ``test_embedder.py``.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from anatcl_sklearn import AnatCLEmbedder

_TABULAR = "feeds a 2-D tabular array; AnatCLEmbedder refuses 2-D input (it needs 3-D images)"

EXPECTED_FAILED_CHECKS = {
    "check_estimators_dtypes": _TABULAR,
    "check_fit_score_takes_y": _TABULAR,
    "check_estimators_fit_returns_self": _TABULAR,
    "check_estimators_overwrite_params": _TABULAR,
    "check_estimators_empty_data_messages": (
        "expects a specific message for empty 2-D data; ours says 'X is empty' in its own words"),
    "check_pipeline_consistency": _TABULAR,
    "check_estimators_nan_inf": (
        "feeds 2-D arrays with NaN; NaN voxels are refused with a named error (tested on images)"),
    "check_estimators_pickle": _TABULAR + "; pickling is tested on images",
    "check_f_contiguous_array_estimator": _TABULAR,
    "check_transformer_data_not_an_array": _TABULAR,
    "check_transformer_general": _TABULAR,
    "check_transformer_preserve_dtypes": _TABULAR,
    "check_methods_sample_order_invariance": _TABULAR,
    "check_methods_subset_invariance": _TABULAR,
    "check_fit2d_1sample": _TABULAR,
    "check_fit2d_1feature": _TABULAR,
    "check_dict_unchanged": _TABULAR,
    "check_dont_overwrite_parameters": _TABULAR,
    "check_fit_idempotent": _TABULAR,
    "check_fit_check_is_fitted": _TABULAR,
    "check_n_features_in": _TABULAR + "; images record input_shape_ instead",
    "check_fit2d_predict1d": _TABULAR,
    "check_set_output_transform": _TABULAR + "; set_output is tested on images",
    "check_global_output_transform_pandas": _TABULAR,
    "check_global_set_output_transform_polars": _TABULAR,
    "check_set_output_transform_pandas": _TABULAR,
    "check_set_output_transform_polars": _TABULAR,
    "check_readonly_memmap_input": _TABULAR,
    "check_n_features_in_after_fitting": _TABULAR,
    "check_positive_only_tag_during_fit": _TABULAR,
    "check_requires_y_none": _TABULAR,
    "check_get_feature_names_out_error": _TABULAR,
    "check_dtype_object": (
        "expects sklearn's own message for object arrays; ours names the dtype and what is accepted"),
    "check_complex_data": "expects a specific message; complex voxels are refused with our own",
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [AnatCLEmbedder(max_epochs=1, batch_size=4, verbose=0, random_state=0)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_check_param_validation_passes():
    # Not among the checks parametrize_with_checks yields (scikit-learn runs it on its own
    # estimators only), so run it here: every parameter of the table, given a value outside
    # its constraint, must fail in fit with "The '<param>' parameter of AnatCLEmbedder must be".
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation("AnatCLEmbedder", AnatCLEmbedder(max_epochs=1, batch_size=4, verbose=0))


def test_parameter_table_names_every_parameter_once():
    params = set(AnatCLEmbedder().get_params(deep=False))
    assert set(AnatCLEmbedder._parameter_constraints) == params
