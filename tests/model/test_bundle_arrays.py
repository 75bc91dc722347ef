"""A model bundle's arrays are checked before the compiled walk sees them: the walk does no bounds checks,
so a crafted `arrays.npz` (registered by anyone who can register a version, with a matching hash) must be
refused with the reason, never read or write outside memory."""

from __future__ import annotations

import numpy as np
import pytest
from leadscore.model import persist


def _inner(z) -> int:
    return int(np.flatnonzero(~z["trees_is_leaf"].astype(bool))[0])


def _set(key, fn):
    def edit(z):
        a = z[key].copy()
        fn(a, z)
        z[key] = a

    return edit


TREE_EDITS = {
    "left child far outside": (
        _set("trees_left", lambda a, z: a.__setitem__(_inner(z), 10**11)),
        "left child",
    ),
    "right child before its parent": (
        _set("trees_right", lambda a, z: a.__setitem__(_inner(z), 0)),
        "right child",
    ),
    "child in the next tree": (
        _set("trees_left", lambda a, z: a.__setitem__(_inner(z), z["trees_roots"][1])),
        "left child",
    ),
    "feature outside the model": (
        _set("trees_feature", lambda a, z: a.__setitem__(_inner(z), 10**6)),
        "feature",
    ),
    "negative feature": (_set("trees_feature", lambda a, z: a.__setitem__(_inner(z), -5)), "feature"),
    "root outside the nodes": (_set("trees_roots", lambda a, z: a.__setitem__(-1, 10**9)), "roots"),
    "categories table cut short": (
        lambda z: z.__setitem__("trees_cat_left", z["trees_cat_left"][:, :8]),
        "cat_left",
    ),
    "fewer thresholds than nodes": (
        lambda z: z.__setitem__("trees_threshold", z["trees_threshold"][:-3]),
        "threshold",
    ),
    "float child links": (lambda z: z.__setitem__("trees_left", z["trees_left"].astype(np.float64)), "dtype"),
}


def _tamper(tmp_path, model, edit):
    path = persist.save(model, tmp_path / "bundle")
    with np.load(path / "arrays.npz") as f:
        z = {k: f[k] for k in f.files}
    edit(z)
    np.savez(path / "arrays.npz", **z)
    return path


@pytest.mark.parametrize("name", list(TREE_EDITS))
def test_crafted_tree_arrays_are_refused_with_the_reason(boosted_model, tmp_path, name):
    # given a boosted model's bundle whose arrays were edited to point outside memory
    edit, words = TREE_EDITS[name]
    path = _tamper(tmp_path, boosted_model, edit)
    # when it is loaded, then it is refused with the reason (and the process is still here to say so)
    with pytest.raises(ValueError, match=words):
        persist.load(path)


def test_the_untouched_bundle_still_loads_and_scores_the_same(boosted_model, trained, tmp_path):
    # given both families saved as they are
    for model in (boosted_model, trained.result.model):
        back = persist.load(persist.save(model, tmp_path / model.family))
        X = np.zeros((2, len(model.encoder.features)))
        X[1] = np.nan
        # then the checks pass and the loaded model explains exactly as the saved one
        got, want = back.raw(X), model.raw(X)
        assert got[0] == want[0] and np.array_equal(got[1], want[1])


def test_an_empty_scorecard_table_is_refused(trained, tmp_path):
    # given a scorecard bundle with one feature's points table emptied (the lookup would read before it)
    path = _tamper(
        tmp_path, trained.result.model, lambda z: z.__setitem__("scorecard_table_0", np.empty(0, np.float64))
    )
    with pytest.raises(ValueError, match="malformed"):
        persist.load(path)


def test_a_bundle_saved_with_the_old_max_depth_array_still_loads_and_scores_the_same(boosted_model, tmp_path):
    # given a boosted bundle as saved before the unused `trees_max_depth` was dropped from the arrays
    path = _tamper(tmp_path, boosted_model, lambda z: z.__setitem__("trees_max_depth", np.array([3])))
    # when it is loaded, then it explains exactly as the model it was saved from
    back = persist.load(path)
    X = np.zeros((2, len(boosted_model.encoder.features)))
    X[1] = np.nan
    got, want = back.raw(X), boosted_model.raw(X)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])
