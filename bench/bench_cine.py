"""Real-time cine: frames per second of ``angioseg segment --fast`` on a DICOM cine of real frames.

Builds a ``--frames``-frame (default 100) 512 x 512 XA DICOM cine from real ARCADE angiograms
(``../shared/data/arcade_unlabeled``) and prints, in one run:

* end-to-end frames/s of the segment path (streamed DICOM decoding, preprocessing, network,
  mapping back, mask PNGs, the multi-frame mask TIFF, vessels.csv; with and without the overlay
  video and the vessel geometry), for each engine, after a warm-up outside the timed loop;
* model-only frames/s (the network on preprocessed batches);
* the paper's UNet (width 64, fp32, standard path, one frame at a time) on a few frames of the same
  cine, and the ratio of the fast path to it;
* peak memory (VmHWM) of each run, and a ``--long-frames`` (default 2000) cine, streamed: its peak
  must stay near the 100-frame one (the decoded cine alone would be 2 GB as float32);
* the Dice check: fast vs standard path for the same weights on the CIMAT test split (finetune's
  default split), for each engine.

``--model RUN`` is the fine-tuned model to time and check (default: a width-16 UNet; timings do not
depend on the weights, and the Dice check then uses the tiny model of tests/tiny_model.py, trained
here in a few seconds). ``--student RUN`` (a distilled student, ``angioseg distill``) is timed the
same way, and its Dice is compared with the ``--model``'s (its teacher) on the same CIMAT test
split: a student at most 0.01 below its teacher passes. Threads: the end-to-end runs use what
``segment --fast`` uses (the torch engine: all cores; onnx and openvino: ``pipeline_threads()``,
one less than the cores, at least 1, for the network; the prefetch and writer threads come on
top), the model-only figures all cores; ``--threads N`` sets both.

Besides frames/s (wall clock), each end-to-end row gives the process's CPU time per frame, which a
loaded machine inflates much less than the wall clock, and the cores that *other* processes used
during that run (from ``/proc/stat``: the machine's busy time less this process's CPU time). Every
section also prints the load average, and says "measured under load" when the 1-minute load
average exceeds the core count; since the segment path runs three threads (prefetch, network,
writer), the bench's own threads count in that average, so the per-row figure is the one to read.

With ``--student``, ``--prefetch-rounds`` (default 3) rounds time the student (with the last of
``--engines``) with the next batch decoded and preprocessed on a background thread (the default of ``segment``) and without, in turn;
``--thread-rounds`` (default 3) rounds time it with the network on one core less (what ``segment
--fast`` does for onnx and openvino) and on every core, in turn.

Run alone on an otherwise idle machine: ``python bench/bench_cine.py --model RUN --student STUDENT``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.dicom_utils, tests.tiny_model

from angioseg.data.io import read_image  # noqa: E402
from angioseg.infer.agreement import Agreement, compare_dice, held_out_test_split  # noqa: E402
from angioseg.infer.engines import pipeline_threads  # noqa: E402
from angioseg.models.unet import UNet  # noqa: E402
from angioseg.predict import Segmenter, segment_inputs  # noqa: E402
from angioseg.train.checkpoint import load_model, segmentation_meta  # noqa: E402
from tests.dicom_utils import write_dicom  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


MASKS_ONLY = {"overlays": False, "stats": False}  # masks written: the PNGs and the cine's TIFF stack


def reset_peak() -> None:
    """Reset this process's peak resident set size (Linux: ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_cine(path: Path, n: int, size: int = 512) -> Path:
    """An XA cine of ``n`` real ARCADE frames (cycled when ``n`` exceeds what is there)."""
    files = sorted((DATA / "arcade_unlabeled").glob("*.png"))
    if not files:
        sys.exit(f"no ARCADE frames in {DATA / 'arcade_unlabeled'}")
    frames = np.empty((n, size, size), np.uint8)
    for i in range(n):
        im = read_image(files[i % len(files)])
        frames[i] = np.asarray(im[:size, :size], np.uint8)
    return write_dicom(path, frames, spacing=(0.3, 0.3), CineRate="15")


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``; NaN elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


LAST_OTHERS: list[float] = []  # cores used by other processes during each end_to_end run


def end_to_end(seg: Segmenter, cine: Path, out: Path, **kw: object) -> tuple[float, float, int, float]:
    """Frames/s, peak MiB, frames and CPU ms per frame of segment_inputs on ``cine`` (after an
    untimed warm-up batch). The cores that other processes used meanwhile go to ``LAST_OTHERS``."""
    seg.segment_batch(read_frames_head(cine, 8))  # warm-up
    reset_peak()
    c, t, b = time.process_time(), time.perf_counter(), busy_cpu_s()
    res = segment_inputs(seg, [cine], out, progress=False, **kw)  # type: ignore[arg-type]
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    LAST_OTHERS.append(max(0.0, (busy_cpu_s() - b - cpu) / dt))
    return len(res.rows) / dt, peak_mib(), len(res.rows), 1000 * cpu / max(1, len(res.rows))


def load_line() -> str:
    """``load average a b c`` (and "measured under load" when the 1-minute figure exceeds the cores)."""
    import os

    one, five, fifteen = os.getloadavg()
    busy = one > (os.cpu_count() or 1)
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores" + (
        ": MEASURED UNDER LOAD" if busy else ""
    )


def read_frames_head(cine: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a cine (streamed)."""
    from itertools import islice

    from angioseg.infer.stream import iter_file_frames

    return [fr.image for fr in islice(iter_file_frames(cine), n)]


def stream_check(cine: Path, model: Path | None, out: Path) -> str:
    """Run :func:`stream_child` in a fresh process (its peak memory is its own); return its line."""
    import subprocess

    cmd = [sys.executable, __file__, "--stream-child", str(cine), "--out-dir", str(out)]
    if model is not None:
        cmd += ["--model", str(model)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def stream_child(cine: Path, model_path: Path | None, out: Path) -> None:
    if model_path is not None:
        model, meta = load_model(model_path)
    else:
        from angioseg.data.preprocess import PreprocessConfig

        model = UNet(width=16).eval()
        meta = segmentation_meta(model, PreprocessConfig().to_dict())
    seg = Segmenter(model, meta, fast=True)
    base = peak_mib()
    fps, mib, n, _ = end_to_end(seg, cine, out, overlays=False, stats=False)
    decoded = n * 512 * 512 * 4 / 2**20
    print(
        f"{n:5d} frames: {fps:6.1f} frames/s, peak {mib:6.0f} MiB (process before the run: {base:.0f} MiB; "
        f"the decoded cine as float32 would be {decoded:.0f} MiB)"
    )


def model_only(seg: Segmenter, n: int = 64, batch: int = 8) -> float:
    size = seg.image_size or 256
    x = torch.randn(batch, 1, size, size)
    seg.engine(x)
    t = time.perf_counter()
    for _ in range(n // batch):
        seg.engine(x)
    return (n // batch) * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="fine-tuned run folder or .safetensors")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--long-frames", type=int, default=2000, help="streaming memory check (0: skip)")
    ap.add_argument("--paper-frames", type=int, default=5, help="frames for the paper UNet")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--student", type=Path, help="distilled student (angioseg distill) of --model")
    ap.add_argument(
        "--engines",
        default="torch,onnx,openvino",
        help="comma-separated engines to time (openvino is skipped when not installed)",
    )
    ap.add_argument(
        "--outputs", choices=("all", "full"), default="all", help="full: only the run with every output"
    )
    ap.add_argument(
        "--prefetch-rounds", type=int, default=3, help="student: rounds of prefetch on/off (0: skip)"
    )
    ap.add_argument(
        "--thread-rounds",
        type=int,
        default=3,
        help="student, last engine if not torch: rounds of network threads as segment --fast vs all cores (0: skip)",
    )
    ap.add_argument("--stream-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    all_threads = torch.get_num_threads()
    e2e_threads = args.threads or pipeline_threads()
    if args.student and not args.model:
        sys.exit("--student needs --model (its teacher)")
    if args.stream_child:
        stream_child(args.stream_child, args.model, args.out_dir)
        return
    engines = args.engines.split(",")
    if "openvino" in engines and importlib.util.find_spec("openvino") is None:
        print("openvino is not installed (pip install 'angioseg[openvino]'): not timed")
        engines.remove("openvino")
    work = Path(tempfile.mkdtemp(prefix="bench_cine_"))
    print(
        f"torch {torch.__version__}, {all_threads} threads ({e2e_threads} for onnx/openvino in the end-to-end runs), "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    print(load_line())
    if args.model:
        model, meta = load_model(args.model)
        dice_model, dice_meta = model, meta
        print(
            f"model {args.model}: width {meta['model'].get('width')}, image_size {meta['preprocess'].get('image_size')}"
        )
    else:
        from angioseg.data.preprocess import PreprocessConfig
        from tests.tiny_model import train_tiny_model

        model = UNet(width=16).eval()
        meta = segmentation_meta(model, PreprocessConfig().to_dict())
        dice_model, dice_meta = load_model(train_tiny_model(work / "tiny"))
        print("model: untrained width-16 UNet at 256 (timing); Dice check: tests/tiny_model.py")
    cine = build_cine(work / "cine.dcm", args.frames)
    print(f"cine: {args.frames} frames 512x512 from {DATA / 'arcade_unlabeled'}")

    runs = [("model", model, meta)]
    if args.student:
        student, student_meta = load_model(args.student)
        runs.append(("student", student, student_meta))
        print(
            f"student {args.student}: width {student_meta['model'].get('width')}, "
            f"depth {student_meta['model'].get('depth')}, distilled from {student_meta.get('teacher', '?')}"
        )
    configs = [
        ("masks + TIFF + video + vessels.csv", {}),
        ("masks + TIFF + vessels.csv, no video", {"overlays": False}),
        ("masks + TIFF, no video, no vessel geometry", MASKS_ONLY),
    ][: 1 if args.outputs == "full" else 3]
    best: dict[tuple[str, str], float] = {}  # (role, outputs) -> best frames/s over the engines
    for role, net, net_meta in runs:
        print(f"\n{role}: end to end (segment path, masks written), frames/s | CPU ms/frame | peak MiB")
        print(f"  ({load_line()})")
        for engine in engines:
            threads = args.threads or (all_threads if engine == "torch" else e2e_threads)  # as segment --fast
            torch.set_num_threads(threads)
            seg = Segmenter(net, net_meta, fast=True, engine=engine, threads=threads)
            for label, kw in configs:
                fps, mib, n, cpu = end_to_end(seg, cine, work / f"out_{role}_{engine}_{len(kw)}", **kw)
                for key, wanted in (("every output", {}), ("masks written", MASKS_ONLY)):
                    if kw == wanted:
                        best[role, key] = max(best.get((role, key), 0.0), fps)
                print(
                    f"  --fast --engine {engine:8s} {label:44s} {fps:7.1f} | {cpu:5.0f} | {mib:7.0f}  ({n} frames; "
                    f"other processes: {LAST_OTHERS[-1]:.2f} cores)"
                )
            torch.set_num_threads(all_threads)
            seg = Segmenter(net, net_meta, fast=True, engine=engine, threads=all_threads)
            print(
                f"  model only, engine {engine}, batches of 8 at {seg.image_size}², {all_threads} threads: "
                f"{model_only(seg):7.1f} frames/s"
            )

    if args.student and args.prefetch_rounds:
        print(
            f"\nstudent, --engine {engines[-1]}, masks written: the next batch decoded and preprocessed on a "
            "background thread (prefetch, the default) or not, rounds interleaved, frames/s"
        )
        threads = args.threads or (all_threads if engines[-1] == "torch" else e2e_threads)
        torch.set_num_threads(threads)
        seg = Segmenter(student, student_meta, fast=True, engine=engines[-1], threads=threads)
        for r in range(args.prefetch_rounds):
            got = []
            for on in (True, False):
                out = work / f"out_prefetch_{on}_{r}"
                fps, _, _, cpu = end_to_end(seg, cine, out, prefetch_batches=on, **MASKS_ONLY)
                got.append(
                    f"{'prefetch' if on else 'one after the other'} {fps:5.1f} ({cpu:3.0f} ms CPU/frame)"
                )
            print(
                f"  round {r + 1}: "
                + ", ".join(got)
                + f"; other processes: {max(LAST_OTHERS[-2:]):.2f} cores"
            )

    if args.student and args.thread_rounds and engines[-1] != "torch" and e2e_threads != all_threads:
        print(
            f"\nstudent, --engine {engines[-1]}, masks written: network threads as segment --fast ({e2e_threads}) "
            f"or all cores ({all_threads}), rounds interleaved, frames/s"
        )
        segs = {
            n: Segmenter(student, student_meta, fast=True, engine=engines[-1], threads=n)
            for n in (e2e_threads, all_threads)
        }
        for r in range(args.thread_rounds):
            got = []
            for n, seg in segs.items():
                torch.set_num_threads(n)
                fps, _, _, cpu = end_to_end(seg, cine, work / f"out_threads_{n}_{r}", **MASKS_ONLY)
                got.append(f"{n} threads {fps:5.1f} ({cpu:3.0f} ms CPU/frame)")
            print(
                f"  round {r + 1}: "
                + ", ".join(got)
                + f"; other processes: {max(LAST_OTHERS[-2:]):.2f} cores"
            )

    torch.set_num_threads(all_threads)  # the paper's UNet: all cores, one frame at a time
    paper = UNet(width=64).eval()
    seg64 = Segmenter(paper, segmentation_meta(paper, meta["preprocess"]))
    frames = read_frames_head(cine, args.paper_frames + 1)
    seg64.segment(frames[0])  # warm-up
    t = time.perf_counter()
    for f in frames[1:]:
        seg64.segment(f)
    paper_fps = args.paper_frames / (time.perf_counter() - t)
    print(f"\npaper UNet (width 64, fp32, standard path, one frame at a time): {paper_fps:.3f} frames/s")
    print(f"  ({load_line()})")
    for (role, outputs), fps in best.items():
        print(f"ratio, {role}, fast path, {outputs} / paper UNet: {fps / paper_fps:.0f}x")

    if args.long_frames:
        print("\nstreaming memory check, each in a fresh process (masks + TIFF, no video, no geometry)")
        long_cine = build_cine(work / "long.dcm", args.long_frames)
        for c in (cine, long_cine):
            print("  " + stream_check(c, args.model, work / f"out_{c.stem}"), flush=True)
        long_cine.unlink()

    print("\nDice on the CIMAT test split, fast vs standard path, same weights (|diff| <= 0.005)")
    samples = held_out_test_split(DATA / "xca_cimat40")
    standard = Segmenter(dice_model, dice_meta)
    for engine in engines:
        fast = Segmenter(dice_model, dice_meta, fast=True, engine=engine)
        ag = compare_dice(samples, standard.segment_batch, fast.segment_batch)
        print_agreement(f"{engine:8s} standard", "fast", ag, 0.005, len(samples))
    if args.student:
        print(
            "\nDice on the same test split, student vs its teacher (--model), same path (student >= teacher - 0.01)"
        )
        names = sorted(s.name for s in samples)
        print(f"  test images: {', '.join(names)}")
        split = args.student / "splits.json"
        if split.is_file() and sorted(json.loads(split.read_text())["test"]) != names:
            print("  WARNING: the student's own test split (splits.json) is not this one")
        for fast_path in (False, True):
            teacher = Segmenter(model, meta, fast=fast_path)
            st = Segmenter(student, student_meta, fast=fast_path)
            ag = compare_dice(samples, teacher.segment_batch, st.segment_batch)
            path = "fast    " if fast_path else "standard"
            print_agreement(f"{path} teacher", "student", ag, 0.01, len(samples), one_sided=True)


def print_agreement(a: str, b: str, ag: Agreement, tolerance: float, n: int, one_sided: bool = False) -> None:
    """One line; ``one_sided``: only a loss of more than ``tolerance`` fails (a student may do better)."""
    passed = ag.difference >= -tolerance if one_sided else abs(ag.difference) <= tolerance
    ok = "ok" if passed else "OUT OF TOLERANCE"
    print(f"  {a} {ag.mean_a:.4f}  {b} {ag.mean_b:.4f}  diff {ag.difference:+.4f}  {ok}  ({n} images)")


if __name__ == "__main__":
    main()
