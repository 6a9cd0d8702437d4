"""The adaptive-beam policy (gen/adaptive_beam.py): confidence, tiers, the request's cap, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecall.gen.adaptive_beam import AdaptiveBeam, calibrate, confidence


def test_confidence_is_the_top1_of_the_allowed_codes_renormalised() -> None:
    inf = float("-inf")
    logp = torch.log(torch.tensor([[0.3, 0.1, 0.0, 0.2], [0.05, 0.05, 0.05, 0.05]]))
    logp[0, 2] = inf
    np.testing.assert_allclose(confidence(logp), [0.5, 0.25], atol=1e-6)
    assert confidence(torch.full((1, 3), inf))[0] == 1.0  # no allowed code: nothing to widen


def test_tiers_thresholds_and_the_request_cap() -> None:
    policy = AdaptiveBeam((20, 50, 100), (0.9, 0.6))
    np.testing.assert_array_equal(policy.beams(np.array([0.95, 0.9, 0.7, 0.6, 0.1])), [20, 20, 50, 50, 100])
    first = torch.log(torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.5, 0.5]]))
    assert policy(first, [50, 30, 200]) == [20, 30, 100]  # beam_size in the request stays the upper bound
    for tiers, thresholds in (((50, 20), (0.5,)), ((20, 50), (0.5, 0.2)), ((20, 50, 100), (0.2, 0.5))):
        with pytest.raises(ValueError):
            AdaptiveBeam(tiers, thresholds)


def test_calibrate_spends_beams_where_they_find_something() -> None:
    # confident requests are found at the small beam already, unsure ones only at the large one
    conf = np.array([0.99, 0.97, 0.95, 0.3, 0.2, 0.1])
    hits = np.array([[1, 1], [1, 1], [1, 1], [0, 1], [0, 1], [0, 1]], dtype=float)
    pairs = np.ones(6)
    policy = calibrate(conf, hits, pairs, (10, 100), target=1.0)
    np.testing.assert_array_equal(policy.beams(conf), [10, 10, 10, 100, 100, 100])
    # a target nothing reaches: the largest tier everywhere
    assert set(calibrate(conf, hits, pairs, (10, 100), target=2.0).beams(conf).tolist()) == {100}
