"""The published FusionOcc weights (the authors' mmdet3d .pth) written once as a fusionocc checkpoint.

Every `--checkpoint` already takes the download as it is; importing it stores the converted weights with their
configuration, so later loads skip the key matching and conversion and the file names the preset it holds.
`--half` stores float16 weights (half the file; loaded back into the float32 model).

    fusionocc import-checkpoint fusion_occ.pth --out fusionocc_official.pt
    fusionocc eval --checkpoint fusionocc_official.pt ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusionocc_core.model.checkpoint import (
    ORIGINAL_FORMAT,
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint_with_report,
    save_checkpoint,
)


def import_checkpoint(source: Path, out: Path, *, half: bool = False) -> LoadedCheckpoint:
    """Loads `source` (published or already ours) and writes it to `out` as a fusionocc checkpoint, atomically.

    A published file gets `imported_from` (file name, preset) as provenance; an own checkpoint keeps its extra
    entries (class weights, calibration), so importing it again only changes the precision.

    Raises:
        CheckpointError: `source` cannot be read or does not fit (one line), or `out` is `source`.
        OSError: `out` cannot be written (an existing file there is left as it was).
    """
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise CheckpointError(f"--out {out} is the source file; write the import to another path")
    loaded = load_checkpoint_with_report(source)
    extra = dict(loaded.extra)
    if loaded.source == ORIGINAL_FORMAT:
        extra["imported_from"] = {"file": source.name, "format": "mmdet3d", "preset": loaded.preset}
    save_checkpoint(out, loaded.model, half=half, **extra)
    return loaded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `fusionocc import-checkpoint`."""
    parser.add_argument("source", type=Path, metavar="SRC", help="the published FusionOcc .pth (or a fusionocc "
                        "checkpoint, e.g. to store it in float16)")
    parser.add_argument("--out", type=Path, required=True, metavar="DST", help="where to write the fusionocc "
                        "checkpoint (written atomically; an existing file is replaced)")
    parser.add_argument("--half", action="store_true", help="store float16 weights: half the file, loaded back "
                        "into the float32 model (differences at float16 rounding)")


def run(args: argparse.Namespace) -> int:
    """`fusionocc import-checkpoint`: 0 when the file is written, 2 on an error (one line)."""
    try:
        loaded = import_checkpoint(args.source, args.out, half=args.half)
    except (CheckpointError, OSError) as error:
        # One line: the loader's messages are one line already; an OSError names the path itself.
        print(f"fusionocc import-checkpoint: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in loaded.model.parameters())
    size_mb = args.out.stat().st_size / 1e6
    print(f"read {args.source}: {loaded.describe()} ({params:,} parameters)")
    print(f"wrote {args.out} ({'float16' if args.half else 'float32'}, {size_mb:.0f} MB); "
          f"pass it to --checkpoint (fusionocc eval, the node's `checkpoint` parameter, the demo)")
    return 0
