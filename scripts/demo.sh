#!/usr/bin/env bash
# The main job, offline on a fresh machine: set up, train a quick anonymiser on the bundled
# HAPT data, export it to a self-describing ONNX file, then stream a simulated wearable
# (held-out HAPT user 9) over a real pseudo-terminal through the gateway runtime to a local
# Mosquitto broker, and print what arrived. Everything listens on 127.0.0.1 only.
# DEMO_DIR (default runs/demo) holds the run, the model, the broker log and the stream.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
DIR=${DEMO_DIR:-runs/demo}
mkdir -p "$DIR"
cli() { "$PY" -m imu_anon "$@"; }

echo "== 1/4 train (quick preset, seed 0) -> $DIR/run"
if [ ! -f "$DIR/run/config.json" ] || [ ! -f "$DIR/run/model.pt" ]; then
    rm -rf "$DIR/run"
    cli train --dataset hapt --quick --seed 0 --out "$DIR/run" --no-progress
fi

echo "== 2/4 export -> $DIR/model.onnx"
cli export "$DIR/run" --out "$DIR/model.onnx" --quick-evaluation
cli inspect "$DIR/model.onnx" > "$DIR/inspect.txt"
head -n 20 "$DIR/inspect.txt"

echo "== 3/4 local broker, runtime, simulated wearable on a pty"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
printf 'user %s\nlistener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$(id -un)" "$PORT" > "$DIR/mosquitto.conf"
"$MOSQ" -c "$DIR/mosquitto.conf" > "$DIR/mosquitto.log" 2>&1 &
BROKER=$!
pids=("$BROKER")
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break; sleep 0.1; done

# A subscriber on '#' records everything the broker ever carries during the demo.
"$PY" - "$PORT" "$DIR/broker-capture.jsonl" <<'PYEOF' &
import json, sys, time
import paho.mqtt.client as mqtt
port, out = int(sys.argv[1]), sys.argv[2]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
fh = open(out, "w")
c.on_message = lambda cl, u, m: (fh.write(json.dumps({"topic": m.topic, "bytes": len(m.payload), "payload": m.payload.decode("utf-8", "replace")}) + "\n"), fh.flush())
c.connect("127.0.0.1", port)
c.subscribe("#", qos=1)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    c.loop(0.2)
PYEOF
pids+=("$!")

# The simulated wearable prints its pty path on the first line of stdout.
"$PY" -m imu_anon device simulate --data hapt --user 9 --port pty --speed 10 --duration 60 --seed 0 > "$DIR/simulator.out" 2> "$DIR/simulator.log" &
SIM=$!
pids+=("$SIM")
for _ in $(seq 100); do [ -s "$DIR/simulator.out" ] && break; sleep 0.1; done
PTY=$(head -n 1 "$DIR/simulator.out")
echo "   wearable on $PTY, broker on 127.0.0.1:$PORT"

"$PY" -m imu_anon run --model "$DIR/model.onnx" --source "serial://$PTY?format=frames" \
    --sink "mqtt://127.0.0.1:$PORT" --sink "file:$DIR/anonymised.jsonl?mode=w" \
    --mqtt-port "$PORT" > "$DIR/runtime.out" 2> "$DIR/runtime.log" &
RUNTIME=$!
pids+=("$RUNTIME")
wait "$SIM" || true
sleep 2
kill -TERM "$RUNTIME"; wait "$RUNTIME" || true

echo "== 4/4 summary"
"$PY" - "$DIR" <<'PYEOF'
import json, sys
d = sys.argv[1]
windows = [json.loads(l) for l in open(f"{d}/anonymised.jsonl")]
seen = [json.loads(l) for l in open(f"{d}/broker-capture.jsonl")]
topics = sorted({m["topic"] for m in seen})
raw = [m for m in seen if m["topic"].endswith("/raw")]
print(f"anonymised windows written to {d}/anonymised.jsonl: {len(windows)}")
if windows:
    w = windows[0]
    print(f"  stream {w['stream']} (pseudonym), {w['rate_hz']} Hz, channels {w['channels']}, "
          f"{len(w['values'][0])} samples a window")
print(f"messages seen on the broker: {len(seen)} on topics {topics[:4]}{' ...' if len(topics) > 4 else ''}")
print(f"raw messages on the broker: {len(raw)} (the wearable is on a serial line, so none)")
print("logs: runtime.log, simulator.log, mosquitto.log in", d)
PYEOF
