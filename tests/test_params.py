"""One parameter declaration (assay._params) for expectations, screens, features and policies: one wording."""

from __future__ import annotations

import pytest

from assay._params import OPTIONAL, Param, check_params
from assay.checks import KINDS, parse_suite
from assay.errors import InputError, ParamError, PolicyError, SuiteError
from assay.gate.policy import POLICY_PARAMS, RULE_PARAMS, parse_policy
from assay.screens import SCREENS, FeatureSpec, make_screen
from assay.screens.features import FEATURE_PARAMS


def test_every_owner_declares_its_parameters_with_the_one_type() -> None:
    declared = [*(p for k in KINDS.values() for p in k.params.values()),
                *(p for s in SCREENS.values() for p in s.params.values()),
                *FEATURE_PARAMS.values(), *POLICY_PARAMS.values(), *RULE_PARAMS.values()]
    assert declared and all(type(p) is Param for p in declared)


def test_check_params_words_each_mistake_the_same_way() -> None:
    params = {"column": Param(str, doc="the column"), "k": Param(int, 3, 1, 10),
              "how": Param(str, "a", choices=("a", "b")), "share": Param(float, OPTIONAL, 0.0, 1.0)}
    assert check_params("thing", params, {"column": "x"}) == {"column": "x", "k": 3, "how": "a"}
    assert check_params("thing", params, {"column": "x", "share": 1}) == {"column": "x", "k": 3, "how": "a",
                                                                          "share": 1.0}
    cases = [({"column": "x", "colour": 1},
              "thing has no parameter 'colour'; it takes ['column', 'how', 'k', 'share']"),
             ({}, "thing is missing parameter 'column' (the column)"),
             ({"column": 3}, "column must be a string, not 3"),
             ({"column": "x", "k": True}, "k must be an integer, not True"),
             ({"column": "x", "k": 11}, "k must lie in [1, 10], not 11"),
             ({"column": "x", "how": "c"}, "how must be one of ['a', 'b'], not 'c'"),
             ({"column": "x", "share": float("nan")}, "share must be a finite number, not nan")]
    for given, words in cases:
        with pytest.raises(ParamError) as info:
            check_params("thing", params, given)
        assert str(info.value) == words
        assert isinstance(info.value, InputError | ValueError) and isinstance(info.value, TypeError)


def test_expectations_screens_and_policies_share_the_wording() -> None:
    with pytest.raises(SuiteError, match="expectation 'between' has no parameter 'colour'; it takes"):
        parse_suite("dataset: t\nexpectations:\n  - {expect: between, column: a, min: 0, colour: red}\n")
    with pytest.raises(ParamError, match="screen 'outlier' has no parameter 'colour'; it takes"):
        make_screen("outlier", colour="red")
    with pytest.raises(PolicyError, match="screen 'outlier': screen 'outlier' has no parameter 'colour'; it takes"):
        parse_policy("screens:\n  outlier: {colour: red}\n")
    with pytest.raises(SuiteError, match=r"quantile must lie in \[0, 1\], not 2"):
        parse_suite("dataset: t\nexpectations:\n  - {expect: quantile_between, column: a, quantile: 2, max: 1}\n")
    with pytest.raises(ParamError, match=r"threshold must lie in \[0\.5, 100\.0\], not 0\.1"):
        make_screen("outlier", threshold=0.1)
    with pytest.raises(PolicyError, match=r"checks must be one of \['reject', 'warn', 'skip'\], not 'maybe'"):
        parse_policy("checks: maybe\n")
    with pytest.raises(ParamError, match="unknown screen 'nope'"):
        make_screen("nope")


def test_feature_settings_are_checked_and_keep_their_defaults() -> None:
    assert FeatureSpec.from_dict({}) == FeatureSpec()
    assert FeatureSpec.from_dict({"columns": ["a", "b"], "dims": 8}).columns == ("a", "b")
    with pytest.raises(ParamError, match=r"image_size must lie in \[4, 256\], not 2"):
        FeatureSpec.from_dict({"image_size": 2})
