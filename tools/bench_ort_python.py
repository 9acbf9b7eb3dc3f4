"""Anchor for `matcha bench extract`: time onnxruntime-python's session.run on the same model and input.

Prints one JSON object: {"median_ms": .., "p90_ms": .., "threads": .., "runs": .., "times_ms": [...]}.
The input is a raw little-endian float32 file of shape 1x3x480x640 written by the Rust side.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    ap.add_argument("--shape", default="1,3,480,640")
    ap.add_argument("--spin", type=int, choices=(0, 1), default=1,
                    help="session.intra_op.allow_spinning (the Rust side passes its runtime.spin_wait)")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    x = np.fromfile(args.input, dtype="<f4").reshape(shape)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", str(args.spin))
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    times = []
    for i in range(args.runs + args.warmup):
        t = time.perf_counter()
        sess.run(None, {name: x})
        if i >= args.warmup:
            times.append((time.perf_counter() - t) * 1e3)
    ordered = sorted(times)
    q = lambda f: ordered[round((len(ordered) - 1) * f)]
    print(json.dumps({"median_ms": q(0.5), "p90_ms": q(0.9), "threads": args.threads, "runs": args.runs,
                      "times_ms": times}))


if __name__ == "__main__":
    main()
