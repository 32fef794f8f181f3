"""``imu-anon device``: emulate a wearable (``simulate``) and inspect captures (``decode``).

    imu-anon device simulate --data hapt --user 9 --port pty          # prints the pty path
    imu-anon device simulate --data walk.csv --port /dev/ttyUSB0 --speed 4
    imu-anon device simulate --user 9 --mqtt mqtt://127.0.0.1:1883 --drop 0.02 --reboot 1/500
    imu-anon device decode capture.imuf
"""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from firmware_bridge.errors import DeviceError

FAULTS = ("drop", "corrupt", "duplicate", "reorder", "reboot")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sim = sub.add_parser("simulate", help="stream recorded IMU data as protocol frames, like a wearable",
                         description="Stream a recording through the real frame encoder to a pty, a serial "
                                     "port or MQTT, at real rate x --speed, with optional link faults.")
    sim.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="debug logging")
    src = sim.add_argument_group("data")
    src.add_argument("--data", default="hapt", help="'hapt' (bundled UCI HAPT), a CSV recording or an .imuf capture")
    src.add_argument("--user", type=int, default=9, help="HAPT user 1..30 (default 9)")
    src.add_argument("--session", type=int, default=None, help="HAPT session of that user (default: the first)")
    out = sim.add_argument_group("output (one of --port / --mqtt, and/or --capture)")
    out.add_argument("--port", help="'pty' (opens a pseudo-terminal and prints its path), a device such as "
                                    "/dev/ttyUSB0, or a pyserial URL")
    out.add_argument("--baud", type=int, default=115200)
    out.add_argument("--mqtt", metavar="URL", help="mqtt://[user:pass@]host:port[/topic]; one message per frame; "
                                                  "topic default imu/<device_id>/raw")
    out.add_argument("--qos", type=int, default=0, choices=(0, 1, 2))
    out.add_argument("--capture", metavar="FILE", help="also write every frame sent to FILE (.imuf)")
    out.add_argument("--linger", type=float, default=2.0,
                     help="pty: seconds to wait at the end for a reader to take the last bytes (default 2)")
    dev = sim.add_argument_group("device")
    dev.add_argument("--device-id", help="64-bit id in hex (default: 'IMUANON' + user for HAPT)")
    dev.add_argument("--chip", default="lsm6ds3", choices=("mpu6050", "lsm6ds3", "lsm6dsox", "bmi270"))
    dev.add_argument("--acc-range", type=int, default=4, help="accelerometer full scale, ±g (default 4)")
    dev.add_argument("--gyro-range", type=int, default=1000, help="gyroscope full scale, ±deg/s (default 1000)")
    dev.add_argument("--format", default="int16", choices=("int16", "float32"))
    dev.add_argument("--samples-per-frame", type=int, default=None, help="default 10 (int16) or 5 (float32)")
    dev.add_argument("--hello-period-ms", type=int, default=2000)
    dev.add_argument("--heartbeat-period-ms", type=int, default=1000)
    pace = sim.add_argument_group("pace")
    pace.add_argument("--speed", default="1", help="1 real time, 4 four times faster, 'max' or 0 as fast as possible")
    pace.add_argument("--loop", action="store_true", help="start the recording again at its end")
    pace.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S device seconds")
    faults = sim.add_argument_group("link faults (RATE: a probability like 0.05 or a period like 1/20)")
    for name in FAULTS:
        faults.add_argument(f"--{name}", default=None, metavar="RATE", help=f"{name} SAMPLES frames")
    faults.add_argument("--seed", type=int, default=0, help="seed of the fault and boot-id generator")

    dec = sub.add_parser("decode", help="decode a frame capture (.imuf) and summarise it")
    dec.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="debug logging")
    dec.add_argument("file")


def run(args: argparse.Namespace) -> int:
    if args.action == "decode":
        return _decode(Path(args.file))
    return _simulate(args)


def _speed(text: str) -> float:
    if text.strip().lower() == "max":
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise DeviceError(f"--speed {text!r}: write a factor such as 1 or 4, or 'max'") from None


def _recording(args: argparse.Namespace):
    from firmware_bridge import recordings
    from firmware_bridge.simulator import hapt_device_id, name_device_id

    if args.data == "hapt":
        rec = recordings.load_hapt_user(args.user, args.session)
        default_id = hapt_device_id(args.user)
    elif args.data.endswith(recordings.FRAME_SUFFIX):
        rec = recordings.load_frames_recording(args.data)
        default_id = name_device_id(rec.name)
    else:
        rec = recordings.load_csv(args.data)
        default_id = name_device_id(rec.name)
    if args.device_id is None:
        return rec, default_id
    try:
        device_id = int(args.device_id, 16)
    except ValueError:
        raise DeviceError(f"--device-id {args.device_id!r} is not hexadecimal") from None
    if not 0 <= device_id < 1 << 64:
        raise DeviceError("--device-id must fit 64 bits (16 hex digits)")
    return rec, device_id


def _simulate(args: argparse.Namespace) -> int:
    from firmware_bridge.ports import FileOutput, MqttOutput, PtyOutput, SerialOutput
    from firmware_bridge.simulator import FaultRule, Faults, Simulator, SimulatorConfig

    if args.port and args.mqtt:
        raise DeviceError("choose one of --port and --mqtt")
    if not (args.port or args.mqtt or args.capture):
        raise DeviceError("say where to send frames: --port pty, --port /dev/ttyX, --mqtt URL or --capture FILE")
    recording, device_id = _recording(args)
    rules = {name: FaultRule.parse(getattr(args, name)) for name in FAULTS if getattr(args, name)}
    config = SimulatorConfig(
        device_id=device_id, chip=args.chip, acc_range_g=args.acc_range, gyro_range_dps=args.gyro_range,
        fmt=args.format, samples_per_frame=args.samples_per_frame, hello_period_ms=args.hello_period_ms,
        heartbeat_period_ms=args.heartbeat_period_ms, speed=_speed(args.speed), loop=args.loop,
        duration_s=args.duration, faults=Faults(seed=args.seed, **rules),
    )
    with ExitStack() as stack:
        pty = None
        if args.port == "pty":
            port = pty = stack.enter_context(PtyOutput())
            print(pty.path, flush=True)
        elif args.port:
            port = stack.enter_context(SerialOutput(args.port, args.baud))
        elif args.mqtt:
            port = stack.enter_context(MqttOutput(args.mqtt, device_id, qos=args.qos))
        else:
            port = None
        capture = stack.enter_context(FileOutput(args.capture)) if args.capture else None

        def send(frame: bytes) -> bool:
            ok = port.send(frame) if port is not None else True
            if ok and capture is not None:
                capture.send(frame)
            return ok

        sim = Simulator(recording, config, send)
        previous = {sig: signal.signal(sig, lambda *_: sim.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            summary = sim.run()
            if pty is not None:
                pty.linger(args.linger, sim.stopping)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print(f"summary: {recording.name} device={device_id:016x} {summary.line()} "
          f"samples_expected={summary.samples_expected}", flush=True)
    return 0


def _decode(path: Path) -> int:
    from firmware_bridge.recordings import read_frame_file

    blocks, counters = read_frame_file(path)
    devices: dict[str, list[int]] = {}
    for b in blocks:
        seen = devices.setdefault(b.device_id, [0, 0, 0])
        seen[0] += len(b)
        seen[1] = max(seen[1], b.epoch)
        seen[2] += 1
    for dev, (samples, epochs, frames) in sorted(devices.items()):
        print(f"device {dev}: {samples} samples in {frames} frames, {epochs + 1} epoch(s)")
    print("counters: " + " ".join(f"{k}={v}" for k, v in counters.items() if v))
    if not blocks:
        print(f"{path}: no decodable samples", file=sys.stderr)
        return 1
    return 0
