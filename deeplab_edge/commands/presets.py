"""`deeplab-edge presets`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._common import add_json_arg

    add_json_arg(p, "the presets")


def run(args: argparse.Namespace) -> int:
    from deeplab_edge.model.deeplab import build_deeplabv3plus
    from deeplab_edge.model.flops import model_cost
    from deeplab_edge.model.presets import list_presets

    rows = []
    for p in list_presets():
        cost = model_cost(build_deeplabv3plus(p.config))
        rows.append({"name": p.name, "description": p.description, "params": cost.params, "macs": cost.macs,
                     "config": p.config.to_dict()})
    from ._common import emit_json

    if emit_json(args.json, rows):
        return 0
    print(f"{'preset':<12} {'backbone':<12} {'alpha':>5} {'input':>9} {'OS':>3} {'ASPP/decoder':<14} "
          f"{'width':>5} {'params':>8} {'GMACs':>7}")
    for r in rows:
        c = r["config"]
        conv = "separable" if c["separable"] else "plain 3x3"
        print(f"{r['name']:<12} {c['backbone']:<12} {c['alpha']:>5} {c['input_size'][0]:>4}x{c['input_size'][1]:<4} "
              f"{c['output_stride']:>3} {conv:<14} {c['width']:>5} {r['params'] / 1e6:>7.2f}M {r['macs'] / 1e9:>7.3f}")
    print("\nMACs: multiply-accumulates of conv, depthwise and dense layers at batch 1, at the preset's input "
          "size, 21 classes.")
    for r in rows:
        print(f"  {r['name']}: {r['description']}")
    return 0
