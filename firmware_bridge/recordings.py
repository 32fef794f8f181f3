"""Recorded IMU streams: the bundled HAPT npz and the project's CSV layout (numpy only).

A :class:`Recording` is what a wearable would have sent: timestamps and raw samples
(acc x, y, z in g; gyro x, y, z in rad/s). The device simulator plays one out over a port;
``imu-anon replay`` streams one through the anonymiser.

CSV layout: a header ``t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z`` (t in seconds), one row
per sample. Lines starting with ``#`` are comments.

Frame captures (``.imuf``): the raw bytes as a gateway received them on the wire, protocol
frames with their delimiters (see PROTOCOL.md); decoded with the gateway's own decoder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_bridge.blocks import SampleBlock
from firmware_bridge.decoder import FrameDecoder
from firmware_bridge.errors import RecordingError

CSV_HEADER = ("t", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
HAPT_RATE_HZ = 50.0
# The bundled copy of UCI HAPT (CC BY 4.0) lives in the repository's data/ folder.
DEFAULT_HAPT = Path(__file__).resolve().parent.parent / "data" / "hapt.npz"


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    t: np.ndarray  # float64 [T], seconds
    samples: np.ndarray  # float32 [T, 6], acc in g, gyro in rad/s
    rate_hz: float

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[1] != 6:
            raise RecordingError(f"{self.name}: samples must be [T, 6], got {self.samples.shape}")
        if self.t.shape != (self.samples.shape[0],):
            raise RecordingError(f"{self.name}: {self.t.shape[0]} timestamps for {self.samples.shape[0]} samples")

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return len(self) / self.rate_hz


def load_hapt_user(user: int, session: int | None = None, path: str | Path = DEFAULT_HAPT) -> Recording:
    """One user's samples from the HAPT npz; ``session`` picks one of their recordings
    (default: the first), so the stream has no internal gap."""
    try:
        data = np.load(path)
        users, sessions, signals = data["user"], data["session"], data["signals"]
    except (OSError, KeyError, ValueError) as exc:
        raise RecordingError(f"{path}: not a HAPT npz ({exc}); expected arrays signals, user, session") from None
    mine = np.flatnonzero(users == user)
    if mine.size == 0:
        raise RecordingError(f"{path}: no user {user}; users are {sorted(set(users.tolist()))}")
    own = sorted(set(sessions[mine].tolist()))
    chosen = own[0] if session is None else session
    if chosen not in own:
        raise RecordingError(f"{path}: user {user} has sessions {own}, not {session}")
    idx = mine[sessions[mine] == chosen]
    samples = np.ascontiguousarray(signals[idx], dtype=np.float32)
    t = np.arange(samples.shape[0], dtype=np.float64) / HAPT_RATE_HZ
    return Recording(name=f"hapt-user{user:02d}-s{chosen}", t=t, samples=samples, rate_hz=HAPT_RATE_HZ)


def load_csv(path: str | Path, rate_hz: float | None = None) -> Recording:
    """Read a CSV recording; the rate is taken from the median timestamp step unless given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: cannot read ({exc})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise RecordingError(f"{path}: empty recording")
    header = tuple(h.strip() for h in lines[0].split(","))
    if header != CSV_HEADER:
        raise RecordingError(f"{path}: header must be {','.join(CSV_HEADER)}, got {lines[0][:80]!r}")
    try:
        table = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise RecordingError(f"{path}: malformed row ({exc})") from None
    if table.shape[0] == 0 or table.shape[1] != len(CSV_HEADER):
        raise RecordingError(f"{path}: expected rows of {len(CSV_HEADER)} numbers, got shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise RecordingError(f"{path}: holds NaN or infinite values")
    t = table[:, 0]
    if rate_hz is None:
        steps = np.diff(t)
        if steps.size == 0 or np.median(steps) <= 0:
            raise RecordingError(f"{path}: cannot infer the sample rate from t; pass it explicitly")
        rate_hz = float(round(1.0 / float(np.median(steps)), 3))
    return Recording(name=path.stem, t=t, samples=table[:, 1:].astype(np.float32), rate_hz=float(rate_hz))


def save_csv(recording: Recording, path: str | Path) -> Path:
    path = Path(path)
    rows = np.column_stack([recording.t, recording.samples.astype(np.float64)])
    np.savetxt(path, rows, delimiter=",", header=",".join(CSV_HEADER), comments="", fmt="%.6f")
    return path


FRAME_SUFFIX = ".imuf"
_READ_CHUNK = 1 << 16


def save_frames(frames, path: str | Path) -> Path:
    """Write wire frames (an iterable of bytes, delimiters included) to a capture file."""
    path = Path(path)
    try:
        with open(path, "wb") as fh:
            for chunk in frames:
                fh.write(chunk)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot write ({exc})") from None
    return path


def read_frame_file(path: str | Path) -> tuple[list[SampleBlock], dict[str, int]]:
    """Decode a capture file: its sample blocks and the decoder's counters."""
    path = Path(path)
    decoder = FrameDecoder()
    blocks: list[SampleBlock] = []
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                blocks += decoder.feed(chunk)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc})") from None
    return blocks, dict(decoder.counters)


def load_frames(path: str | Path) -> list[SampleBlock]:
    """The sample blocks of a capture file, gaps and reboots marked as the decoder saw them."""
    blocks, counters = read_frame_file(path)
    if not blocks:
        raise RecordingError(f"{path}: no decodable samples ({_nonzero(counters)}); is it an .imuf capture?")
    return blocks


def load_frames_recording(path: str | Path, device_id: str | None = None) -> Recording:
    """One device's samples of a capture as a :class:`Recording`.

    Time restarts at a reboot; here it continues one sample period after the last sample of
    the previous epoch, so ``t`` keeps increasing. Gaps inside an epoch stay gaps in ``t``."""
    blocks = load_frames(path)
    devices = sorted({b.device_id for b in blocks})
    if device_id is None:
        if len(devices) > 1:
            raise RecordingError(f"{path}: holds {len(devices)} devices ({', '.join(devices)}); choose one")
        device_id = devices[0]
    mine = [b for b in blocks if b.device_id == device_id]
    if not mine:
        raise RecordingError(f"{path}: no device {device_id}; devices are {', '.join(devices)}")
    rates = {b.rate_hz for b in mine}
    if len(rates) > 1:
        raise RecordingError(f"{path}: device {device_id} changed its rate ({sorted(rates)} Hz); split the capture")
    rate = rates.pop()
    times, offset, epoch, end = [], 0.0, mine[0].epoch, None
    for b in mine:
        if b.epoch != epoch and end is not None:
            offset = end + 1.0 / rate - b.t0
            epoch = b.epoch
        t = b.t0 + offset + np.arange(len(b)) / rate
        times.append(t)
        end = float(t[-1])
    return Recording(name=Path(path).stem, t=np.concatenate(times),
                     samples=np.concatenate([b.samples for b in mine]).astype(np.float32), rate_hz=float(rate))


def _nonzero(counters: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counters.items() if v) or "empty"
