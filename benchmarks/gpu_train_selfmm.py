"""Self-MM + InfoEnh on MOSI-sized SYNTHETIC data, a few epochs on one GPU: epoch time and throughput.

    python benchmarks/gpu_train_selfmm.py                      # CUDA, MOSI sizes, 3 epochs (< 5 min on an H100)
    python benchmarks/gpu_train_selfmm.py --compare            # also the host alone, same data and seed
    python benchmarks/gpu_train_selfmm.py --device cpu --tiny  # smoke test of the same code path on a CPU

Data: the SYNTHETIC testbed at MOSI's sizes and unaligned shapes (1284/229/686 clips; text 50 x 768,
audio 375 x 5, vision 500 x 20). Training runs the project's trainer functions
(:func:`infoenh.train.trainer.train_one_epoch`, :func:`~infoenh.train.trainer.evaluate`): bf16
autocast on CUDA (LSTMs and InfoEnh's Sinkhorn stay in float32), pinned host memory with
non-blocking copies, MMSA's Self-MM settings (batch 16, 4-batch accumulation, Adam with per-group
rates). Printed per epoch: train time, train throughput (samples/s), validation time; at the end
the peak GPU memory and the test metrics of the last epoch (SYNTHETIC, not MOSI: a speed check,
not a result).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

from infoenh.data import make_loaders
from infoenh.data.synthetic import make_synthetic_splits
from infoenh.models import build_model
from infoenh.train.config import TrainConfig
from infoenh.train.seeding import seed_everything
from infoenh.train.trainer import _train_labels, evaluate, precision_label, resolve_device, train_one_epoch

TINY = dict(sizes=(64, 16, 16), text_dim=64, text_len=16, audio_len=40, vision_len=40)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(ds, variant: str, args, device) -> dict:
    cfg = TrainConfig(model="selfmm", infoenh=variant, epochs=args.epochs, device=str(device), amp=not args.no_amp,
                      batch_size=args.batch_size, quiet=True,
                      infoenh_kwargs={"k": args.k, "d": args.d}).resolved()
    seed_everything(1111)
    model = build_model("selfmm", ds.dims, infoenh=variant, n_train=len(ds["train"]),
                        infoenh_kwargs=cfg.infoenh_kwargs).to(device)
    model.init_from_train(*_train_labels(ds["train"]))
    opt = torch.optim.Adam(model.param_groups())
    loaders = make_loaders(ds, batch_size=cfg.batch_size, seed=1111)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n_train = len(ds["train"])
    times = []
    print(f"--- Self-MM, InfoEnh {variant} | batch {cfg.batch_size} x accum {cfg.accum_steps} | "
          f"{precision_label(device, cfg.autocast)}")
    for epoch in range(1, args.epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        tr = train_one_epoch(model, loaders["train"], opt, cfg, epoch, device)
        sync(device)
        t1 = time.perf_counter()
        va = evaluate(model, loaders["valid"], device, cfg.autocast)
        sync(device)
        t2 = time.perf_counter()
        times.append(t1 - t0)
        print(f"epoch {epoch}: train {t1 - t0:7.2f} s ({n_train / (t1 - t0):8.1f} samples/s), "
              f"valid {t2 - t1:6.2f} s, train loss {tr['loss']:.4f}, valid MAE {va['metrics']['MAE']:.4f}")
    te = evaluate(model, loaders["test"], device, cfg.autocast)
    steady = times[1:] or times          # the first epoch pays for start-up (cuDNN plans, allocator)
    res = {"variant": variant, "epoch_s": sum(steady) / len(steady), "samples_per_s": n_train * len(steady) / sum(steady),
           "test_MAE": te["metrics"]["MAE"]}
    if device.type == "cuda":
        res["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    print(f"steady epoch {res['epoch_s']:.2f} s, {res['samples_per_s']:.1f} samples/s"
          + (f", peak GPU memory {res['peak_mem_mb']:.0f} MiB" if "peak_mem_mb" in res else "")
          + f", SYNTHETIC test MAE {res['test_MAE']:.4f}")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None, help="default: MMSA's 16")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--compare", action="store_true", help="also train the host without InfoEnh")
    p.add_argument("--tiny", action="store_true", help="tiny data (CPU smoke test)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_synthetic_splits(seed=0, **(TINY if args.tiny else {}))
    print(f"SYNTHETIC data {'(tiny)' if args.tiny else '(MOSI sizes and unaligned shapes)'}: "
          f"{ {s: len(ds[s]) for s in ds} }, widths {ds.dims}, lengths {ds.seq_lens} "
          f"(generated in {time.perf_counter() - t0:.1f} s)")
    out = [run(ds, "full", args, device)]
    if args.compare:
        out.append(run(ds, "none", args, device))
        print(f"InfoEnh / host epoch time: {out[0]['epoch_s'] / out[1]['epoch_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
