#!/usr/bin/env python3
"""Score images in PyTorch with a model file written by dfd-export, printing the CSV dfd-predict
prints (path,p_fake,label,error,detail).

The file is read with safetensors; the torchvision ResNet/ResNeXt and the head are rebuilt from
its metadata and tensors (no dfd code involved), and images go through torchvision's own
Resize + CenterCrop + Normalize, so this is an independent check of dfd-predict and a starting
point for using a trained detector in PyTorch (see scripts/export_onnx.py).

Usage: python3 scripts/torch_predict.py model.safetensors <image files or folders>...
Needs: torch, torchvision, safetensors, Pillow.
"""

import csv
import json
import os
import sys

import torch
import torchvision
from PIL import Image, ImageOps
from safetensors import safe_open
from torch import nn
from torchvision import transforms
from torchvision.models.resnet import Bottleneck, ResNet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
CUT_ORDER = ["stem", "layer1", "layer2", "layer3", "layer4", "pooled", "logits"]


def backbone_of(arch_text):
    """torchvision's model for a preset name, or ResNet(Bottleneck, …) for an arch in JSON."""
    if arch_text.startswith("{"):
        a = json.loads(arch_text)
        return ResNet(Bottleneck, a["blocks"], num_classes=a["num_classes"], groups=a["groups"],
                      width_per_group=a["width_per_group"])
    return getattr(torchvision.models, arch_text)(weights=None)


def classifier(spec_input, hidden, dropout):
    """nn.Sequential(Flatten, Dropout, Linear, ReLU, Dropout, Linear, …, Linear(→2)), named as dfd
    names its variables (classifier.2, classifier.5, …)."""
    layers = [nn.Flatten(), nn.Dropout(dropout)]
    width = spec_input
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


class Head(nn.Module):
    def __init__(self, spec, backbone):
        super().__init__()
        (kind, body), = spec.items()
        self.kind = kind
        if kind == "mlp":
            self.classifier = classifier(body["input"], body["hidden"], body["dropout"])
        elif kind == "linear":
            self.classifier = classifier(body["input"], [], body["dropout"])
        elif kind == "finetune_layer4":
            fresh = backbone_of(json.dumps(body["arch"]))
            self.layer4 = fresh.layer4
            self.fc = nn.Linear(self.layer4[-1].conv3.out_channels, 2)
        else:
            raise SystemExit(f"unknown head kind {kind}")

    def forward(self, x):
        if self.kind == "finetune_layer4":
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layer4(x), 1), 1))
        return self.classifier(x)


def features(backbone, x, cut):
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        if CUT_ORDER.index(cut) < CUT_ORDER.index(name):
            return x
        x = getattr(backbone, name)(x)
    x = torch.flatten(backbone.avgpool(x), 1)
    return backbone.fc(x) if cut == "logits" else x


def load(path):
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != "dfd-model/1":
        raise SystemExit(f"{path}: not a dfd-export model file (format {meta.get('format')!r})")
    backbone = backbone_of(meta["arch"])
    state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: backbone keys missing {missing[:3]}, unexpected {unexpected[:3]}")
    heads = []
    for fold, spec in zip(json.loads(meta["folds"]), json.loads(meta["heads"])):
        head = Head(spec, backbone)
        prefix = f"heads.{fold}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = head.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"{path}: fold {fold} head keys missing {missing[:3]}, unexpected {unexpected[:3]}")
        heads.append(head.eval())
    return meta, backbone.eval(), heads


def inputs(args):
    for arg in args:
        if os.path.isdir(arg):
            found = []
            for root, dirs, files in os.walk(arg):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                        found.append(os.path.join(root, name))
            yield from sorted(found)
        else:
            yield arg


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    meta, backbone, heads = load(sys.argv[1])
    size = int(meta["input_size"])
    prepare = transforms.Compose([
        transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(json.loads(meta["mean"]), json.loads(meta["std"])),
    ])
    threshold = float(meta["threshold"])
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["path", "p_fake", "label", "error", "detail"])
    for path in inputs(sys.argv[2:]):
        try:
            image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        except Exception as e:  # noqa: BLE001 - every unreadable file is a row, as in dfd-predict
            out.writerow([path, "", "", "not_an_image", str(e)])
            continue
        with torch.no_grad():
            maps = features(backbone, prepare(image).unsqueeze(0), meta["cut"])
            logits = [h(maps).double()[0] for h in heads]
        p = sum(float(1.0 / (1.0 + torch.exp(l[0] - l[1]))) for l in logits) / len(logits)
        out.writerow([path, f"{p:.6}", "fake" if p >= threshold else "real", "", ""])


if __name__ == "__main__":
    main()
