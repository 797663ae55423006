"""The benchmark's baseline: the same work in eager PyTorch, on the same architecture.

N and G are `mde_adv.torch_reference` (written from the spec, the parity reference of the
tests), NCHW, float32, `torch.set_num_threads(os.cpu_count())`. The attacks are the
textbook PyTorch loop (inputs with requires_grad, `torch.autograd.grad` of the summed
per-example ℓ1 losses, sign step, clamp to the ε-ball, per-example ε and T) with the
networks' parameters frozen (no weight gradients); the train steps are `loss.backward()` and
`torch.optim.Adam(weight_decay=...)` (coupled L2, as our optimiser) on l_dif. On a GPU
(`device='cuda'`) every callable ends with `torch.cuda.synchronize()`, so that wall time is
the work's time; PyTorch's defaults stand (cuDNN may use TF32 for convolutions).
"""

import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mde_adv.torch_reference import TorchDepthNet, TorchSaliencyNet

SOBEL = torch.tensor(
    [[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]],
     [[[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]]]
)  # fmt: skip


def l_dif(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 6 as the authors compute it (means over the batch); pred, target [B,1,h,w]."""
    kernel = SOBEL.to(pred)  # pred's dtype and device
    pred_grad, target_grad = F.conv2d(pred, kernel, padding=1), F.conv2d(target, kernel, padding=1)
    ones = torch.ones_like(pred)
    pred_normal = torch.cat([-pred_grad, ones], 1)
    target_normal = torch.cat([-target_grad, ones], 1)
    cosine = F.cosine_similarity(pred_normal, target_normal, dim=1, eps=0)
    log_abs = lambda a, b: torch.log(torch.abs(a - b) + 0.5).mean()
    return (
        log_abs(pred, target)
        + log_abs(pred_grad[:, :1], target_grad[:, :1])
        + log_abs(pred_grad[:, 1:], target_grad[:, 1:])
        + torch.abs(1 - cosine).mean()
    )


def ifgsm(
    predict: Callable, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """ℓ∞ IFGSM (Eq. 1, α = 1) in normalised space, ℓ1 loss; eps f32[B], steps int[B] ≥ 1."""
    eps = eps.view(-1, 1, 1, 1)
    delta = torch.zeros_like(x)
    for t in range(int(steps.max())):
        delta.requires_grad_(True)
        loss = torch.abs(predict(x + delta) - y).mean(dim=(1, 2, 3)).sum()
        (gradient,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            stepped = torch.clamp(delta + torch.sign(gradient), -eps, eps)
            delta = torch.where((t < steps).view(-1, 1, 1, 1), stepped, delta)
    return (x + delta).detach()


def frozen(net: torch.nn.Module) -> torch.nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def networks(setting: dict):
    torch.manual_seed(0)
    n = TorchDepthNet(setting["depth_net"]["encoder"], setting["depth_net"]["width"])
    g = TorchSaliencyNet(setting["saliency_net"]["encoder"], setting["saliency_net"]["width"])
    return n, g


def inputs(x: np.ndarray, y: np.ndarray, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC arrays of the JAX side -> NCHW tensors on `device` (the very same values)."""
    nchw = lambda a: np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))
    return torch.from_numpy(nchw(x)).to(device), torch.from_numpy(nchw(y)).to(device)


def synchronized(run: Callable, device: str) -> Callable:
    """`run` followed, on a GPU, by a wait for the work it queued."""
    if device == "cpu":
        return run

    def wait():
        out = run()
        torch.cuda.synchronize(device)
        return out

    return wait


def work(
    setting: dict, x: np.ndarray, y: np.ndarray, train: dict, device: str = "cpu"
) -> dict[str, Callable]:
    """name -> a zero-argument callable doing that work once on `device` (names as in
    jax_work).

    train: learning_rate, weight_decay, eps f32[B], steps, sparsity_weight, saliency_target
    (from `jax_work.baseline_train_settings`, so that both sides do the same work).
    """
    torch.set_num_threads(os.cpu_count() or 1)
    networks_on = lambda: tuple(net.to(device) for net in networks(setting))
    n, g = networks_on()
    xt, yt = inputs(x, y, device)
    batch = xt.shape[0]
    full = lambda value: torch.full((batch,), value, device=device)
    eps = full(0.1)
    sweep = (0.05, 0.1, 0.15, 0.2)

    def forward(net):
        def run():
            net.eval()
            with torch.no_grad():
                return net(xt)

        return run

    def attack(steps):
        def run():
            return ifgsm(frozen(n), xt, yt, eps, full(steps))

        return run

    def eps_sweep():
        return [ifgsm(frozen(n), xt, yt, full(e), full(10)) for e in sweep]

    def adam(net):
        net.train()
        return torch.optim.Adam(
            net.parameters(), lr=train["learning_rate"], weight_decay=train["weight_decay"]
        )

    def train_depth():
        net, _ = networks_on()
        opt = adam(net)
        return lambda: _step(opt, l_dif(net(xt), yt))

    def train_saliency(adversarial: bool):
        frozen_n, net = networks_on()
        frozen_n = frozen(frozen_n)
        opt = adam(net)
        adv_eps = torch.as_tensor(train["eps"], device=device)
        adv_steps = full(train["steps"])

        def run():
            inp = ifgsm(frozen_n, xt, yt, adv_eps, adv_steps) if adversarial else xt
            target = yt
            if not adversarial and train["saliency_target"] == "depth_net":
                with torch.no_grad():
                    target = frozen_n(inp)
            mask = net(inp)
            pred = frozen_n(inp * mask)
            return _step(opt, l_dif(pred, target) + train["sparsity_weight"] * mask.mean())

        return run

    jobs = {
        "N forward": forward(n),
        "G forward": forward(g),
        "FGSM": attack(1),
        "IFGSM-10": attack(10),
        "IFGSM-10 sweep of 4 ε": eps_sweep,
        "train step N": train_depth(),
        "train step G": train_saliency(False),
        "train step G_adv (IFGSM-10 on every example)": train_saliency(True),
    }
    return {name: synchronized(run, device) for name, run in jobs.items()}


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach().item()
