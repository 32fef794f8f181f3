"""Evaluation of an anonymiser: attackers, baselines, metrics, plots and reports.

Modules are imported where needed (torch, scipy and matplotlib only by the parts that use
them), so ``imu-anon evaluate --help`` stays fast:

- :mod:`.subjects`: a run directory or an ONNX file behind one face;
- :mod:`.methods`, :mod:`.baselines`: the rows (raw, AAE, resampling, SSA, REP);
- :mod:`.tasks`, :mod:`.classifiers`, :mod:`.metrics`, :mod:`.dtw`: splits and scores;
- :mod:`.protocol`: the evaluation itself; :mod:`.plots`, :mod:`.report`: what it writes.
"""
