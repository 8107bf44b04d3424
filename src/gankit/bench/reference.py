"""The baseline of `gankit bench`: the classic PyTorch DCGAN example's training loop (pytorch/examples, dcgan),
written here from its published description so that it runs without torchvision.

What makes it the classic loop, kept on purpose: images served one at a time as PIL images through per-sample
transforms (Resize, CenterCrop, ToTensor, Normalize) by a DataLoader with 2 worker processes; D ends in a Sigmoid
and is trained with BCELoss, real and fake halves backpropagated separately; G runs once per iteration and its
output is reused, detached for D's update and again through D for G's (computing D's weight gradients, which are
discarded); fp32, contiguous (NCHW) tensors; `.item()` of five values every iteration for the log line. The
networks are the example's, built from stock torch layers as it builds them (no biases, weights from N(0, 0.02),
batch-norm scales from N(1, 0.02)): at 64×64 its exact layout and widths; at 28 and 32 the same pattern with one
stride-2 layer fewer (the layer plan of gankit's DCGAN, `nets.dcgan_plan`). Adam(2e-4, β = (0.5, 0.999)).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gankit.models import NetSpec, dcgan_plan, init_dcgan_weights


class PILImages(Dataset):
    """uint8 (N, C, H, W) images served as PIL images through the example's per-sample transforms."""

    def __init__(self, images: torch.Tensor, resolution: int):
        self.array = images.numpy()
        self.resolution = resolution

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, i: int):
        pixels = self.array[i]
        image = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
        if image.size != (self.resolution, self.resolution):  # Resize(r); CenterCrop(r) is then the identity
            image = image.resize((self.resolution, self.resolution), Image.BILINEAR)
        t = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0)  # ToTensor
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        return (t - 0.5) / 0.5, 0  # Normalize((0.5,), (0.5,))


def reference_spec(channels: int, resolution: int) -> NetSpec:
    """The example's sizes (nz = 100, ngf = ndf = 64) as a gankit NetSpec, for gankit's rows of the bench."""
    return NetSpec(
        channels=channels,
        resolution=resolution,
        num_classes=0,
        latent_dim=100,
        width_g=64,
        width_d=64,
        batchnorm_g=True,
        batchnorm_d=True,
    )


def classic_networks(spec: NetSpec) -> tuple[nn.Sequential, nn.Sequential]:
    """The example's Generator (z as (N, nz, 1, 1) → Tanh image) and Discriminator (image → Sigmoid probability)."""
    base, k = dcgan_plan(spec.resolution)
    width = spec.width_g * 2 ** (k - 1)
    g: list[nn.Module] = [
        nn.ConvTranspose2d(spec.latent_dim, width, base, 1, 0, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(True),
    ]
    for _ in range(k - 1):
        g += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
        width //= 2
    g += [nn.ConvTranspose2d(width, spec.channels, 4, 2, 1, bias=False), nn.Tanh()]
    d: list[nn.Module] = [nn.Conv2d(spec.channels, spec.width_d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    width = spec.width_d
    for _ in range(k - 1):
        d += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True)]
        width *= 2
    d += [nn.Conv2d(width, 1, base, 1, 0, bias=False), nn.Sigmoid()]
    G, D = nn.Sequential(*g), nn.Sequential(*d)
    for net in (G, D):
        init_dcgan_weights(net)  # the example's weights_init: the same N(0, 0.02) and BN N(1, 0.02)
    return G, D


class ReferenceLoop:
    """The example's iteration as `step()`; `G` is the generator it trains."""

    def __init__(
        self,
        images: torch.Tensor,
        resolution: int,
        batch_size: int = 128,
        workers: int = 2,
        lr: float = 2e-4,
        seed: int = 0,
    ):
        torch.manual_seed(seed)
        self.spec = reference_spec(images.shape[1], resolution)
        self.G, self.D = classic_networks(self.spec)
        self.criterion = nn.BCELoss()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.batch_size = batch_size
        self.loader = DataLoader(
            PILImages(images, resolution),
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
        )
        self._batches = iter(self.loader)
        self.last_log = None

    def _next_real(self) -> torch.Tensor:
        try:
            return next(self._batches)[0]
        except StopIteration:  # a new epoch, as the example's outer loop starts one
            self._batches = iter(self.loader)
            return next(self._batches)[0]

    def step(self) -> None:
        real = self._next_real()
        n = real.shape[0]
        self.D.zero_grad()
        label = torch.full((n,), 1.0)
        output = self.D(real).view(-1)
        loss_d_real = self.criterion(output, label)
        loss_d_real.backward()
        d_x = output.mean().item()
        fake = self.G(torch.randn(n, self.spec.latent_dim, 1, 1))
        label.fill_(0.0)
        output = self.D(fake.detach()).view(-1)
        loss_d_fake = self.criterion(output, label)
        loss_d_fake.backward()
        d_g_z1 = output.mean().item()
        self.opt_d.step()

        self.G.zero_grad()
        label.fill_(1.0)
        output = self.D(fake).view(-1)
        loss_g = self.criterion(output, label)
        loss_g.backward()
        self.opt_g.step()
        self.last_log = (loss_d_real.item() + loss_d_fake.item(), loss_g.item(), d_x, d_g_z1, output.mean().item())

    def close(self) -> None:
        self._batches = None  # stops the worker processes
