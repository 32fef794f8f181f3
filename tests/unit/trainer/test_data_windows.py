"""Windowing: boundaries, class mapping, counts, and the standardiser."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.layout import to_model_channels
from trainer.data import SETTINGS, ImuDataset, Setting, Standardiser, make_windows
from trainer.errors import DatasetError

WALK3 = SETTINGS["hapt-walk3"]


def _dataset(runs: list[tuple[int, int, int, int]]) -> ImuDataset:
    """Consecutive runs of (user, session, activity, length); signal = sample index."""
    users, sessions, acts = [], [], []
    for user, session, act, n in runs:
        users += [user] * n
        sessions += [session] * n
        acts += [act] * n
    t = len(users)
    signals = np.repeat(np.arange(t, dtype=np.float32)[:, None], 6, axis=1)
    return ImuDataset(name="hapt", signals=signals, user=np.array(users), session=np.array(sessions),
                      activity=np.array(acts), rate_hz=50.0)


def test_windows_never_cross_a_user_session_or_activity_boundary() -> None:
    ds = _dataset([(1, 0, 1, 30), (1, 0, 2, 25), (1, 1, 2, 20), (2, 2, 2, 22), (2, 2, 3, 9)])
    ws = make_windows(ds, WALK3, window=10, hop=5)
    # runs of 30, 25, 20, 22, 9 samples give 5, 4, 3, 3, 0 windows, hops restarting per run
    assert ws.start.tolist() == [0, 5, 10, 15, 20, 30, 35, 40, 45, 55, 60, 65, 75, 80, 85]
    for i, s in enumerate(ws.start):
        span = slice(s, s + 10)
        for arr in (ds.user, ds.session, ds.activity):
            assert np.unique(arr[span]).size == 1
        np.testing.assert_array_equal(ws.x[i, 0], np.arange(s, s + 10, dtype=np.float32))
    assert np.unique(ws.segment).size == 4


def test_windows_carry_class_indices_users_and_sessions_of_their_samples() -> None:
    ds = _dataset([(4, 7, 3, 12), (4, 7, 1, 12), (5, 8, 2, 12)])
    ws = make_windows(ds, WALK3, window=12, hop=12)
    assert ws.activity.tolist() == [2, 0, 1]  # downstairs, walking, upstairs
    assert ws.user.tolist() == [4, 4, 5] and ws.session.tolist() == [7, 7, 8]
    assert ws.x.shape == (3, 6, 12) and ws.x.dtype == np.float32
    assert ws.class_names == ("walking", "upstairs", "downstairs") and len(ws) == 3


def test_labels_outside_the_setting_and_unlabelled_samples_give_no_windows() -> None:
    ds = _dataset([(1, 0, -1, 40), (1, 0, 4, 40), (1, 0, 1, 40), (1, 0, 7, 40)])
    ws = make_windows(ds, WALK3, window=20, hop=10)
    assert set(ws.activity.tolist()) == {0}
    assert ws.start.min() == 80 and ws.start.max() + 20 <= 120
    six = make_windows(ds, SETTINGS["hapt-6"], window=20, hop=10)
    assert sorted(set(six.activity.tolist())) == [0, 3]


def test_subset_keeps_every_field_aligned() -> None:
    ws = make_windows(_dataset([(1, 0, 1, 50), (2, 1, 2, 50)]), WALK3, window=10, hop=10)
    sub = ws.subset(np.array([1, 6]))
    assert sub.start.tolist() == [10, 60] and sub.user.tolist() == [1, 2] and sub.activity.tolist() == [0, 1]
    np.testing.assert_array_equal(sub.x[1], ws.x[6])


def test_windowing_refuses_a_setting_of_another_data_set_and_too_short_data() -> None:
    ds = _dataset([(1, 0, 1, 50)])
    with pytest.raises(DatasetError, match="for the 'motionsense' data"):
        make_windows(ds, SETTINGS["motionsense-4"])
    with pytest.raises(DatasetError, match="no window of 128 samples"):
        make_windows(ds, WALK3)
    with pytest.raises(DatasetError, match="mapped to two classes"):
        Setting(name="x", dataset="hapt", classes=((1,), (1, 2)), class_names=("a", "b"), test_users=())


def test_the_bundled_hapt_walk3_setting_yields_the_expected_window_count(hapt_path) -> None:
    from trainer.data import load_dataset

    ws = make_windows(load_dataset("hapt", hapt_path), WALK3)
    assert len(ws) == 28590 and ws.window == 128 and ws.hop == 10 and ws.rate_hz == 50.0
    assert np.bincount(ws.activity).tolist() == [10652, 9424, 8514]


def test_standardiser_fitted_on_training_windows_gives_zero_mean_unit_std_and_inverts() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(loc=[[1.0], [0.0], [0.0], [0.5], [0.0], [0.0]], scale=0.3, size=(50, 6, 32)).astype(np.float32)
    x = to_model_channels(raw, "mag")
    st = Standardiser.fit(x)
    z = st.apply(x)
    np.testing.assert_allclose(z.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2)), 1.0, atol=1e-4)
    np.testing.assert_allclose(st.invert(z), x, atol=1e-5)
    again = Standardiser.from_dict(st.to_dict())
    np.testing.assert_array_equal(again.mean, st.mean)


def test_standardiser_refuses_a_constant_channel() -> None:
    x = np.ones((4, 2, 8), dtype=np.float32)
    x[:, 1] = np.arange(8)
    with pytest.raises(DatasetError, match=r"channels \[0\] are constant"):
        Standardiser.fit(x)
