#!/usr/bin/env python3
"""Reference training steps for dfd-train's optimisers, computed with PyTorch.

A small MLP head (PyTorch layout: Flatten, Dropout(0), Linear 8→6, ReLU, Dropout(0), Linear 6→2,
i.e. parameters `2.weight`, `2.bias`, `5.weight`, `5.bias`, which dfd-model names
`classifier.2.*`, `classifier.5.*`) takes two steps on one batch with class-weighted
cross-entropy + l1·Σ|θ|, global-norm gradient clipping, and Adam (L2 in the gradient) or AdamW
(decoupled decay). The initial parameters, the batch, the hyper-parameters and, per optimiser,
the loss and every parameter after each step go to
`crates/train/tests/fixtures/optim_reference.json`.

    python3 scripts/make_optim_fixtures.py
"""

import json
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/train/tests/fixtures/optim_reference.json"
HP = {
    "lr": 0.01,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.1,
    "l1": 0.01,
    "clip_grad_norm": 0.5,
    "class_weights": [1.0, 2.5],
    "steps": 2,
}


def model():
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Dropout(0.0),
        torch.nn.Linear(8, 6),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.0),
        torch.nn.Linear(6, 2),
    )


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def run(kind, init, x, y):
    net = model()
    net.load_state_dict(init)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    opt = cls(
        net.parameters(),
        lr=HP["lr"],
        betas=tuple(HP["betas"]),
        eps=HP["eps"],
        weight_decay=HP["weight_decay"],
        foreach=False,
    )
    weight = torch.tensor(HP["class_weights"], dtype=torch.float32)
    steps = []
    for _ in range(HP["steps"]):
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(net(x), y, weight=weight)
        loss = ce + HP["l1"] * sum(p.abs().sum() for p in net.parameters())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), HP["clip_grad_norm"])
        opt.step()
        steps.append(
            {
                "loss": float(loss.detach()),
                "params": {f"classifier.{k}": flat(v) for k, v in net.state_dict().items()},
            }
        )
    return steps


def main():
    torch.manual_seed(20261130)
    init = model().state_dict()
    x = torch.randn(5, 8)
    y = torch.tensor([0, 1, 1, 0, 1])
    ref = {
        "torch": torch.__version__,
        "hyper": HP,
        "x": flat(x),
        "x_shape": list(x.shape),
        "y": y.tolist(),
        "init": {f"classifier.{k}": flat(v) for k, v in init.items()},
        "shapes": {f"classifier.{k}": list(v.shape) for k, v in init.items()},
        "adam": run("adam", init, x, y),
        "adamw": run("adamw", init, x, y),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
