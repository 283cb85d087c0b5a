#!/usr/bin/python3
"""The ONNX round-trip references (tests/onnx): torchvision models exported by torch, imported by ctnet.

    onnx_reference.py DIR TOOL GEN_DIR NAME:MODEL[:fold] ...

For each NAME: tools/onnx_torchvision.py exports MODEL (inception_v3 | googlenet) with weights from a
fresh seed (printed) into DIR/NAME (model.onnx, input.npy, logits.npy, stats.json), `TOOL import`
writes DIR/NAME/NAME.hpp and DIR/NAME/weights.safetensors, and the header must equal
GEN_DIR/NAME.hpp, the one generated at build time (from another seed) and compiled into the test:
the generated type depends on the architecture only. Exits 1 on any difference or failure.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    out, tool, gen = sys.argv[1:4]
    for spec in sys.argv[4:]:
        parts = spec.split(":")
        name, model = parts[0], parts[1]
        flags = ["--fold-bn"] if "fold" in parts[2:] else []
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        subprocess.run([sys.executable, os.path.join(HERE, "onnx_torchvision.py"), model, d, *flags], check=True)
        header = os.path.join(d, name + ".hpp")
        subprocess.run([tool, "import", os.path.join(d, "model.onnx"), "--name", name, "-o", header,
                        "--weights", os.path.join(d, "weights.safetensors")], check=True)
        with open(header) as f:
            fresh = f.read()
        with open(os.path.join(gen, name + ".hpp")) as f:
            built = f.read()
        if fresh != built:
            print(f"onnx_reference.py: {header} differs from the header compiled at build time, "
                  f"{os.path.join(gen, name + '.hpp')}")
            sys.exit(1)
        print(f"{name}: imported, header identical to the build-time one")


if __name__ == "__main__":
    main()
