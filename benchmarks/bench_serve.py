"""Serving: assay serve against a plain FastAPI endpoint, on one INT8 digits model, loaded by wrk.

`assay serve` (micro-batching, prediction log on; and with --no-log) against a plain FastAPI endpoint that calls
ONNX Runtime once per request (what a user writes by hand), on the same INT8 digits model, loaded by wrk from a
second process, side by side in one run.

wrk (Debian: `apt-get install -y wrk`) is closed-loop: C connections each send a request as soon as the last
answer came, so its table gives throughput and latency percentiles (p50/p90/p99, max) at each connection count.
Fixed request rates (200, 500, 1000 req/s, and the highest rate each server holds with p99 <= 25 ms) come
from autocannon (wrk2 is not packaged by Debian), a Node.js load generator from the npm registry, also in its
own process: `mkdir -p /work/peer-autocannon && cd /work/peer-autocannon && npm install autocannon@8`, then
`--autocannon /work/peer-autocannon/node_modules/.bin/autocannon`. autocannon paces each connection, so a
server that falls behind shows it as a rate below the target and growing latency. BentoML is not run here.

    python benchmarks/bench_serve.py [--connections 1,8,32] [--seconds 5] [--rates 200,500,1000]
                                     [--autocannon PATH] [--quick]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import parser, print_table, scratch, setup

import assay
from assay.models import register
from assay.models.onnx_export import export_onnx
from assay.models.quantize import quantize

PLAIN = '''
import os, json, numpy as np, onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
sess = ort.InferenceSession(open(os.environ["MODEL"], "rb").read(), opts, providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
app = FastAPI()
@app.post("/v1/models/digits/predict")
async def predict(request: Request):
    body = json.loads(await request.body())
    out = sess.run(names, {"X": np.asarray([body["X"]], dtype=np.float32)})
    return JSONResponse({k: v[0].tolist() for k, v in zip(names, out)})
'''
LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body}]]\n'


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(folder: Path) -> tuple[Path, bytes, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=80, random_state=0)).fit(x[:1200], y[:1200])
    fp32 = export_onnx(mlp, sample_inputs=x[:4]).onnx
    int8 = quantize(fp32, eval_inputs=x[1200:], eval_targets=y[1200:], task="classification").onnx
    repo = assay.init(folder / "repo")
    register(repo, "digits", int8)
    repo.close()
    (folder / "digits.onnx").write_bytes(int8)
    return folder / "repo", int8, x


def _wait(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"a server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("a server did not start")


def _wrk(port: int, lua: Path, connections: int, seconds: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(lua),
                          f"http://127.0.0.1:{port}/v1/models/digits/predict"], capture_output=True, text=True)
    text = out.stdout
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def ms(label: str) -> float | None:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", text)
        return float(m.group(1)) * units[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    maxm = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50%"), "p90": ms("90%"), "p99": ms("99%"),
            "max": float(maxm.group(1)) * units[maxm.group(2)] if maxm else None,
            "non2xx": int(errors.group(1)) if errors else 0}


def _autocannon(exe: str, port: int, body: str, rate: int, seconds: int) -> dict[str, Any]:
    conns = max(8, min(128, rate // 20))  # enough connections that the pacing, not the round trip, sets the rate
    out = subprocess.run([exe, "-j", "-c", str(conns), "-R", str(rate), "-d", str(seconds), "-m", "POST",
                          "-H", "Content-Type=application/json", "-b", body,
                          f"http://127.0.0.1:{port}/v1/models/digits/predict"], capture_output=True, text=True)
    r = json.loads(out.stdout)
    lat = r["latency"]
    return {"rps": r["requests"]["average"], "p50": lat["p50"], "p90": lat["p90"], "p99": lat["p99"],
            "max": lat["max"], "non2xx": r.get("non2xx", 0) + r.get("errors", 0) + r.get("timeouts", 0)}


def _holds(r: dict[str, Any], rate: int) -> bool:
    return r["p99"] <= 25 and r["rps"] >= 0.95 * rate and r["non2xx"] == 0


def _fixed_rates(exe: str, servers: dict[str, tuple[int, Any]], body: str, rates: list[int], seconds: int) -> None:
    rows = []
    for rate in rates:
        for label, (port, _) in servers.items():
            r = _autocannon(exe, port, body, rate, seconds)
            rows.append([rate, label, f"{r['rps']:.0f}", *(f"{r[k]:.1f}" for k in ("p50", "p90", "p99", "max")),
                         r["non2xx"]])
    print_table("fixed rates (autocannon; latency in ms)", ["target req/s", "server", "req/s", "p50", "p90", "p99",
                                                            "max", "errors"], rows)
    best: dict[str, int] = {}
    for label, (port, _) in servers.items():
        rate, held = 250, 0
        while rate <= 8000:
            if not _holds(_autocannon(exe, port, body, rate, seconds), rate):
                break
            held, rate = rate, int(rate * 1.5)
        best[label] = held
    plain = best.get("plain FastAPI") or 0
    print_table("highest rate held with p99 <= 25 ms (steps x1.5 from 250 req/s)", ["server", "req/s", "vs plain"],
                [[k, v, f"{v / plain:.2f}x" if plain else "-"] for k, v in best.items()])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--connections", default="1,8,32")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rates", default="200,500,1000")
    p.add_argument("--autocannon", default=shutil.which("autocannon") or "",
                   help="autocannon's executable (see the docstring); without it the fixed-rate tables are skipped")
    args = p.parse_args()
    setup(args, "serve: assay serve vs a plain FastAPI endpoint (wrk)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    seconds = 2 if args.quick else args.seconds
    with scratch(args, "bench-serve-") as folder:
        repo, _, x = _model(folder)
        lua = folder / "body.lua"
        lua.write_text(LUA.format(body=json.dumps({"X": x[0].tolist()})))
        (folder / "plain_app.py").write_text(PLAIN)
        env = {**os.environ, "MODEL": str(folder / "digits.onnx")}
        servers = {}
        a_port, b_port, n_port, p_port = _port(), _port(), _port(), _port()
        for label, port, extra in (("assay serve", a_port, []),
                                   ("assay serve --log-durability batch", b_port, ["--log-durability", "batch"]),
                                   ("assay serve --no-log", n_port, ["--no-log"])):
            servers[label] = (port, subprocess.Popen(
                [sys.executable, "-m", "assay.cli", "-C", str(repo), "serve", "digits", "--port", str(port),
                 "--no-auth", *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        servers["plain FastAPI"] = (p_port, subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "plain_app:app", "--port", str(p_port), "--log-level", "warning",
             "--no-access-log"], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            for port, proc in servers.values():
                _wait(port, "/docs", proc)
            rows = []
            for c in (int(v) for v in args.connections.split(",")):
                for label, (port, _) in servers.items():  # interleaved, so that other load falls on both alike
                    r = _wrk(port, lua, c, seconds)
                    rows.append([c, label, f"{r['rps']:.0f}", *(f"{r[k]:.2f}" if r[k] is not None else "-"
                                                               for k in ("p50", "p90", "p99", "max")), r["non2xx"]])
            print_table("closed loop, batch-1 requests (latency in ms)", ["conns", "server", "req/s", "p50", "p90",
                                                                          "p99", "max", "non-2xx"], rows)
            if args.autocannon:
                _fixed_rates(args.autocannon, servers, json.dumps({"X": x[0].tolist()}),
                             [int(v) for v in args.rates.split(",")], seconds)
            else:
                print("fixed rates: skipped (no autocannon; see the docstring for how to install it)")
            with assay.Repo(repo) as r:
                time.sleep(1.5)
                n = r.dataset("predictions.digits").num_rows if "predictions.digits" in r.datasets() else 0
            print(f"prediction log: {n} rows committed while serving (flush every 1 s)")
        finally:
            for _, proc in servers.values():
                proc.send_signal(signal.SIGTERM)
            for _, proc in servers.values():
                proc.wait(30)


if __name__ == "__main__":
    main()
