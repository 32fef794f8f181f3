"""Splits: no user leaks between train and test, no overlap in time, first session trains."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data import (SETTINGS, ImuDataset, cross_session_split, load_dataset, make_windows, subject_split,
                          time_split, trial_split)
from trainer.errors import DatasetError

WALK3 = SETTINGS["hapt-walk3"]


def _windows(runs, window=10, hop=2):
    users, sessions, acts = [], [], []
    for user, session, act, n in runs:
        users += [user] * n
        sessions += [session] * n
        acts += [act] * n
    sig = np.random.default_rng(0).normal(size=(len(users), 6)).astype(np.float32)
    ds = ImuDataset(name="hapt", signals=sig, user=np.array(users), session=np.array(sessions),
                    activity=np.array(acts), rate_hz=50.0)
    return make_windows(ds, WALK3, window=window, hop=hop)


@pytest.fixture(scope="module")
def walk3(hapt_path):
    return make_windows(load_dataset("hapt", hapt_path), WALK3)


def test_subject_split_on_hapt_leaks_no_user_between_train_and_test(walk3) -> None:
    train, test = subject_split(walk3, WALK3.test_users)
    assert set(walk3.user[test].tolist()) == set(WALK3.test_users)
    assert not set(walk3.user[train].tolist()) & set(walk3.user[test].tolist())
    assert len(train) + len(test) == len(walk3) and len(set(train) | set(test)) == len(walk3)


def test_subject_split_names_test_users_that_have_no_windows() -> None:
    ws = _windows([(1, 0, 1, 40), (2, 1, 1, 40)])
    with pytest.raises(DatasetError, match=r"test users \[9\] have no windows"):
        subject_split(ws, [9])


def test_time_split_trains_on_the_start_of_each_segment_and_tests_on_the_end_without_overlap() -> None:
    ws = _windows([(1, 0, 1, 100), (1, 0, 2, 61), (2, 1, 1, 100)])
    train, test = time_split(ws)
    for seg in np.unique(ws.segment):
        mine = ws.segment == seg
        tr = ws.start[np.intersect1d(np.flatnonzero(mine), train)]
        te = ws.start[np.intersect1d(np.flatnonzero(mine), test)]
        assert tr.size and te.size
        first, end = ws.start[mine].min(), ws.start[mine].max() + ws.window
        cut = first + int((2 / 3) * (end - first))
        assert tr.max() + ws.window <= cut  # wholly inside the first 2/3
        assert te.min() >= cut and te.min() >= tr.max() + ws.window  # one window after the last start
    # segment 0: 100 samples, windows start 0..90 step 2, cut at 66
    seg0 = ws.segment == ws.segment[0]
    assert ws.start[np.intersect1d(np.flatnonzero(seg0), train)].tolist() == list(range(0, 57, 2))
    assert ws.start[np.intersect1d(np.flatnonzero(seg0), test)].tolist() == list(range(66, 91, 2))


def test_time_split_on_hapt_keeps_every_user_on_both_sides(walk3) -> None:
    train, test = time_split(walk3)
    assert set(walk3.user[train].tolist()) == set(walk3.user[test].tolist()) == set(range(1, 31))
    assert not set(train.tolist()) & set(test.tolist())
    assert 0.55 < len(train) / len(walk3) < 0.65 and 0.15 < len(test) / len(walk3) < 0.25


def test_cross_session_split_trains_on_each_users_first_session(walk3) -> None:
    train, test = cross_session_split(walk3)
    for user in range(1, 31):
        mine = walk3.user == user
        first = walk3.session[mine].min()
        assert set(walk3.session[np.intersect1d(np.flatnonzero(mine), train)].tolist()) == {first}
        assert first not in set(walk3.session[np.intersect1d(np.flatnonzero(mine), test)].tolist())
    assert len(train) + len(test) == len(walk3)


def test_cross_session_split_needs_a_second_session() -> None:
    with pytest.raises(DatasetError, match="no user has a second session"):
        cross_session_split(_windows([(1, 0, 1, 40), (2, 1, 1, 40)]))


def test_trial_split_tests_the_given_trials_only() -> None:
    ws = _windows([(1, 11, 1, 30), (1, 3, 1, 30), (2, 12, 2, 30), (2, 4, 2, 30)])
    train, test = trial_split(ws, range(11, 17))
    assert set(ws.session[test].tolist()) == {11, 12} and set(ws.session[train].tolist()) == {3, 4}
    with pytest.raises(DatasetError, match="leave one side empty"):
        trial_split(ws, [99])
