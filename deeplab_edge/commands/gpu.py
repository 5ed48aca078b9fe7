"""`deeplab-edge gpu`: which GPU paths this machine offers, optionally tried on a file; the software device."""

from __future__ import annotations

import argparse

from ._flags import as_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="a .tflite file to try on LiteRT's GPU accelerator (names the adapter "
                   "and whether the whole file runs there)")
    p.add_argument("--install-swiftshader", action="store_true",
                   help="download SwiftShader (a CPU implementation of Vulkan, from Debian's chromium-common) into "
                        "~/.cache/deeplab-edge/swiftshader: the GPU path's files and code tested on any machine, at a "
                        "CPU's speed")


def run(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from deeplab_edge.runtime.backends import GPU_PROVIDERS
    from deeplab_edge.runtime.vulkan import find_vulkan, install_swiftshader, swiftshader_dir

    if args.install_swiftshader:
        install_swiftshader(progress=print)
    setup = find_vulkan()
    if setup is None:
        print(f"Vulkan (LiteRT GPU): none: no hardware driver, and no SwiftShader in {swiftshader_dir()} "
              "(deeplab-edge gpu --install-swiftshader)")
    else:
        kind = "software device (SwiftShader), emulated on the CPU" if setup.software else "hardware driver"
        print(f"Vulkan (LiteRT GPU): {kind}: {', '.join(setup.icds)} (loader {setup.loader})")
    gpu = [p for p in ort.get_available_providers() if p in GPU_PROVIDERS]
    print(f"onnxruntime {ort.__version__} GPU providers: {', '.join(gpu) or 'none'} "
          f"(all: {', '.join(ort.get_available_providers())})")
    from deeplab_edge.runtime.backends import webgpu_plugin_devices

    plugin = webgpu_plugin_devices()[1]
    if plugin:
        print(plugin)
    if args.model:
        from deeplab_edge.runtime.backends import open_backend

        b = open_backend(args.model, device="gpu")
        print(f"{args.model}: runs fully on {b.providers[0]}")
        print(f"adapter: {b.gpu.adapter}")
        for note in b.notes:
            print(f"note: {as_flags(note)}")
    return 0
