#!/usr/bin/env python3
"""Convert a dfd-export model file to ONNX: input `images` (N×3×S×S, normalised as the file's
`mean`/`std` say, after its `resize` rule), output `p_fake` (N, the mean over the file's folds).

Goes through scripts/torch_predict.py's PyTorch rebuild. When onnxruntime is installed, the ONNX
file is run on a random batch and checked against PyTorch (max |difference| printed).

Usage: python3 scripts/export_onnx.py model.safetensors model.onnx
Needs: torch, torchvision, safetensors, Pillow (and onnx for the export; onnxruntime optional).
"""

import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_predict import features, load  # noqa: E402


class Detector(nn.Module):
    def __init__(self, meta, backbone, heads):
        super().__init__()
        self.cut = meta["cut"]
        self.backbone = backbone
        self.heads = nn.ModuleList(heads)

    def forward(self, images):
        maps = features(self.backbone, images, self.cut)
        probs = [torch.softmax(h(maps), dim=1)[:, 1] for h in self.heads]
        return torch.stack(probs, 0).mean(0)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    meta, backbone, heads = load(sys.argv[1])
    model = Detector(meta, backbone, heads).eval()
    size = int(meta["input_size"])
    example = torch.randn(2, 3, size, size)
    torch.onnx.export(model, (example,), sys.argv[2], input_names=["images"],
                      output_names=["p_fake"], dynamic_axes={"images": {0: "n"}, "p_fake": {0: "n"}},
                      opset_version=17)
    print(f"wrote {sys.argv[2]}")
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime is not installed: the ONNX file was not checked")
        return
    session = onnxruntime.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
    got = session.run(["p_fake"], {"images": example.numpy()})[0]
    with torch.no_grad():
        want = model(example).numpy()
    print(f"onnxruntime vs PyTorch: max |p_fake difference| {abs(got - want).max():.2e}")


if __name__ == "__main__":
    main()
