import dataclasses

import pytest
import torch
from torch import nn

from gankit.models import NetSpec, build, dcgan_plan
from gankit.models.layers import ClassBatchNorm2d, minibatch_std


@pytest.mark.parametrize("resolution", [16, 28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(resolution, channels):
    spec = NetSpec(channels=channels, resolution=resolution, width_g=8, width_d=8, latent_dim=10)
    G, D = build("dcgan", spec)
    x = G(torch.randn(3, 10))
    assert x.shape == (3, channels, resolution, resolution)
    assert x.abs().max() <= 1  # tanh output
    base, k = dcgan_plan(resolution)
    assert D.features(x).shape == (3, 8 * 2 ** (k - 1) * base * base)
    assert D(x).shape == (3,)


def test_dcgan_follows_radford_et_al():
    G, D = build("dcgan", NetSpec(resolution=64, width_g=8, width_d=8, latent_dim=10))
    for net in (G, D):
        kinds = {type(m) for m in net.modules()}
        assert not kinds & {nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.Sigmoid}  # no FC hidden layers, no pooling
    g_layers = [m for m in G.net if not isinstance(m, nn.Sequential)]
    assert isinstance(g_layers[-1], nn.Tanh) and isinstance(g_layers[-2], nn.ConvTranspose2d)  # no BN on output
    assert all(isinstance(m, (nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.Tanh)) for m in g_layers)
    d_layers = list(D.body)
    assert isinstance(d_layers[0], nn.Conv2d) and isinstance(d_layers[1], nn.LeakyReLU)  # no BN on D's input
    assert all(m.negative_slope == 0.2 for m in d_layers if isinstance(m, nn.LeakyReLU))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d_layers) == 3
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.stride == (2, 2) for c in convs[:-1])  # strided convolutions do the downsampling
    std = torch.cat([c.weight.flatten() for c in convs]).std().item()
    assert 0.015 < std < 0.025  # N(0, 0.02) init


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_conditional_models_use_labels(conditioning):
    torch.manual_seed(0)
    spec = NetSpec(
        resolution=28,
        num_classes=10,
        width_g=8,
        width_d=8,
        latent_dim=10,
        conditioning_d=conditioning,
        batchnorm_g=False,
        batchnorm_d=False,
    )
    G, D = build("dcgan", spec)
    z = torch.randn(4, 10)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(G(z, y0), G(z, y1))
    x = G(z, y0)
    assert not torch.allclose(D(x, y0), D(x, y1))


def test_class_batchnorm_gives_each_class_its_own_scale_and_shift():
    torch.manual_seed(0)
    spec = NetSpec(resolution=28, num_classes=3, width_g=8, width_d=8, latent_dim=10, class_batchnorm_g=True)
    G, _ = build("dcgan", spec)
    norms = [m for m in G.modules() if isinstance(m, ClassBatchNorm2d)]
    assert len(norms) == 2 and sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 2
    assert 0.9 < norms[0].scale.weight.mean() < 1.1 and norms[0].shift.weight.abs().max() == 0  # starts as plain BN
    with torch.no_grad():
        G.label_embedding.weight.zero_()  # labels now reach G only through its batch norms
        for m in norms:
            m.scale.weight.fill_(1.0)
        norms[-1].shift.weight[2] += 0.5
    z = torch.randn(6, 10)
    outputs = [G.eval()(z, torch.full((6,), c)) for c in range(3)]
    assert torch.equal(outputs[0], outputs[1]) and not torch.allclose(outputs[0], outputs[2])
    G.train()(z, torch.tensor([0, 0, 1, 1, 0, 1])).square().mean().backward()
    grad = norms[0].scale.weight.grad
    assert grad[:2].abs().sum() > 0 and grad[2].abs().sum() == 0  # only the classes in the batch learn
    keys = list(G.state_dict())
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(G)  # --sync-batchnorm (in place) swaps the normalisation only
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == 2 and list(synced.state_dict()) == keys
    with pytest.raises(ValueError, match="needs class labels"):
        build("dcgan", dataclasses.replace(spec, num_classes=0))


def test_remedy_options():
    spec = NetSpec(
        resolution=32,
        width_g=8,
        width_d=8,
        latent_dim=10,
        spectral_norm_d=True,
        dropout_d=0.3,
        batchnorm_d=False,
        batchnorm_g=False,
    )
    G, D = build("dcgan", spec)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in list(G.modules()) + list(D.modules()))
    assert sum(isinstance(m, nn.Dropout) for m in D.modules()) == 3
    sn = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert all(hasattr(m, "parametrizations") for m in sn)
    D.train()
    for _ in range(20):  # power iteration converges: spectral norm of each reshaped weight → 1
        D(torch.randn(4, 1, 32, 32))
    w = sn[1].weight.flatten(1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1) < 0.05


def test_minibatch_std_is_each_groups_spread():
    f = torch.randn(8, 5)
    groups = [f[[i, i + 2, i + 4, i + 6]] for i in range(2)]  # groups of 4 interleave: i, i + N/4, ...
    expected = torch.stack([g.std(dim=0, unbiased=False).mean() for g in groups]).repeat(4)
    torch.testing.assert_close(minibatch_std(f), expected)
    copies = f[:1].expand(8, 5).clone().requires_grad_(True)
    assert minibatch_std(copies).max() < 1e-3  # copies: no spread (but √ε)
    (grad,) = torch.autograd.grad(minibatch_std(copies).sum(), copies)
    assert grad.isfinite().all()  # a fully collapsed batch must not turn D's gradient into NaN
    assert minibatch_std(f[:6]).shape == (6,) and minibatch_std(f[:3]).max() < 1e-3  # groups of 2; of 1


@pytest.mark.parametrize("model, x", [("dcgan", torch.randn(8, 1, 16, 16)), ("mlp", torch.randn(8, 2))])
def test_minibatch_std_lets_d_tell_a_collapsed_batch_and_push_its_samples_apart(model, x):
    spec = NetSpec(
        channels=x.shape[1],
        resolution=x.shape[-1] if x.dim() == 4 else 0,
        width_g=8,
        width_d=8,
        latent_dim=4,
        minibatch_std_d=True,
        batchnorm_d=False,
    )
    D = build(model, spec)[1].eval()
    plain = build(model, dataclasses.replace(spec, minibatch_std_d=False))[1].eval()
    plain.load_state_dict({k: v for k, v in D.state_dict().items() if k != "std_weight"})
    assert torch.equal(D(x), plain(x))  # the spread's weight starts at 0: D starts as the plain one
    with torch.no_grad():
        D.std_weight.fill_(1.0)
    copies = x[:1].expand_as(x)
    assert torch.allclose(D(copies), plain(copies), atol=1e-3)  # no spread in a batch of copies
    gap = D(x) - plain(x)
    torch.testing.assert_close(gap, minibatch_std(D.features(x)))
    assert (gap > 0).all()
    near = (copies + 1e-3 * torch.randn_like(x)).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(near).sum() - plain(near).sum(), near)
    assert grad.abs().sum() > 0  # through the spread, D's output moves the samples of a near-collapsed batch
    assert torch.equal(D.features(x), plain.features(x))  # per-image features (the probe's) stay per image


def test_mlp_shapes_and_conditioning():
    G, D = build("mlp", NetSpec(channels=2, resolution=0, latent_dim=4, width_g=16, width_d=16, num_classes=3))
    y = torch.tensor([0, 1, 2, 0, 1])
    x = G(torch.randn(5, 4), y)
    assert x.shape == (5, 2) and D(x, y).shape == (5,) and D.features(x, y).shape == (5, 16)


def test_invalid_resolution_is_refused():
    with pytest.raises(ValueError, match="28 or one of"):
        dcgan_plan(48)


def test_first_and_last_layers_compute_their_convolutions():
    torch.manual_seed(0)
    G, D = build("dcgan", NetSpec(resolution=32, width_g=8, width_d=8, latent_dim=10, batchnorm_g=False))
    z = torch.randn(3, 10)
    projection = G.net[0]
    expected = nn.functional.conv_transpose2d(z[:, :, None, None], projection.weight, projection.bias)
    assert torch.allclose(projection(z[:, :, None, None]), expected, atol=1e-6)
    projection.to(memory_format=torch.channels_last)  # multiplied as a view of its own layout
    assert torch.allclose(projection(z[:, :, None, None]), expected, atol=1e-6)
    x = torch.randn(3, 1, 32, 32)
    features = D.features(x)
    expected = nn.functional.conv2d(features.view(3, 32, 4, 4), D.out.weight, D.out.bias).flatten()
    assert torch.allclose(D.head(features), expected, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("num_classes", [0, 3])  # conditional: G's batch norms per class, D's projection
def test_channels_last_networks_keep_every_activation_and_gradient_channels_last(autocast, num_classes):
    spec = NetSpec(
        resolution=32, width_g=8, width_d=8, latent_dim=10, num_classes=num_classes, class_batchnorm_g=bool(num_classes)
    )
    G, D = (m.to(memory_format=torch.channels_last) for m in build("dcgan", spec))
    layouts = []

    def record(module, inputs, out):
        if out.shape[1] > 1 and out.shape[2] > 1:  # 1-channel and 1×1 tensors have no distinct layout
            layouts.append((type(module).__name__, out.is_contiguous(memory_format=torch.channels_last)))
            out.register_hook(lambda g: layouts.append(("grad", g.is_contiguous(memory_format=torch.channels_last))))

    for m in list(G.net) + list(D.body):
        m.register_forward_hook(record)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = torch.arange(4) % 3 if num_classes else None
        D(G(torch.randn(4, 10), y), y).sum().backward()
    assert len(layouts) == 2 * 17 and all(cl for _, cl in layouts), layouts


@pytest.mark.parametrize("num_classes", [0, 3])
def test_channels_last_residual_networks_keep_their_activations_and_gradients_channels_last(num_classes):
    spec = NetSpec(resolution=32, width_g=8, width_d=8, latent_dim=10, num_classes=num_classes, spectral_norm_d=True)
    G, D = (m.to(memory_format=torch.channels_last) for m in build("resnet", spec))
    layouts = []

    def record(module, inputs, out):
        if out.dim() == 4 and out.shape[1] > 1 and out.shape[2] > 1:
            name = f"{type(module).__name__}{tuple(out.shape)}"
            layouts.append((name, out.is_contiguous(memory_format=torch.channels_last)))
            out.register_hook(
                lambda g: layouts.append((f"grad {name}", g.is_contiguous(memory_format=torch.channels_last)))
            )

    for m in [*G.modules(), *D.modules()]:
        if m not in (G, D):
            m.register_forward_hook(record)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch.arange(4) % 3 if num_classes else None
        D(G(torch.randn(4, 10), y), y).sum().backward()
    # The one exception: D's first shortcut convolves the pooled 1-channel image, whose layout is ambiguous.
    assert [name for name, cl in layouts if not cl] == ["ParametrizedConv2d(4, 8, 16, 16)"] and len(layouts) > 100


@pytest.mark.parametrize(
    "resolution, widths_g, widths_d, features",
    [
        # SNGAN's CIFAR layout at 28 and 32: constant widths; D pools twice, then two blocks keep the side
        (28, [8, 8, 8], [8, 8, 8, 8], 8),
        (32, [8, 8, 8, 8], [8, 8, 8, 8], 8),
        # its ImageNet layout at 64, 128: G halves its width per up-block after the first, D doubles it per down-block
        (64, [64, 64, 32, 16, 8], [8, 16, 32, 64, 64], 64),
        (128, [128, 128, 64, 32, 16, 8], [8, 16, 32, 64, 128, 128], 128),
    ],
)
def test_resnet_follows_sngan(resolution, widths_g, widths_d, features):
    from gankit.models.resnet import DownBlock, UpBlock

    spec = NetSpec(channels=3, resolution=resolution, width_g=8, width_d=8, latent_dim=10, num_classes=4)
    G, D = build("resnet", spec)
    z, y = torch.randn(3, 10), torch.tensor([0, 1, 3])
    x = G(z, y)
    assert x.shape == (3, 3, resolution, resolution) and x.abs().max() <= 1
    ups = [m for m in G.modules() if isinstance(m, UpBlock)]
    assert [ups[0].conv1.in_channels] + [b.conv2.out_channels for b in ups] == widths_g
    downs = [m for m in D.modules() if isinstance(m, DownBlock)]
    assert [b.conv2.out_channels for b in downs] == widths_d
    assert downs[0].first and sum(b.down for b in downs) == len(downs) - (2 if resolution <= 32 else 1)
    assert D.features(x, y).shape == (3, features) and D(x, y).shape == (3,)
    # Spectral norm on every weight of D, the label embedding included; none in G. Class BN starts as plain BN.
    weighted = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert weighted and all(hasattr(m, "parametrizations") for m in weighted)
    assert not any(hasattr(m, "parametrizations") for m in G.modules())
    norms = [m for m in G.modules() if isinstance(m, ClassBatchNorm2d)]
    assert len(norms) == 2 * len(ups) and all(bool((n.scale.weight == 1).all()) for n in norms)
    assert not torch.allclose(D(x, y), D(x, torch.tensor([2, 2, 2])))  # the projection reads the label


def test_resnet_blocks_are_residual_with_the_optimised_first_block():
    from gankit.models.resnet import DownBlock

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    first = DownBlock(3, 4, down=True, first=True).eval()
    f = nn.functional
    # The paper's optimised first block: no ReLU on the image; its shortcut pools before its 1×1 convolution.
    residual = f.avg_pool2d(first.conv2(f.relu(first.conv1(x))), 2)
    assert torch.allclose(first(x), residual + first.shortcut(f.avg_pool2d(x, 2)), atol=1e-6)
    later = DownBlock(3, 4, down=True).eval()
    residual = f.avg_pool2d(later.conv2(f.relu(later.conv1(f.relu(x)))), 2)
    assert torch.allclose(later(x), residual + f.avg_pool2d(later.shortcut(x), 2), atol=1e-6)
    keep = DownBlock(4, 4, down=False)
    assert keep.shortcut is None  # same width and side: the identity
    assert DownBlock(4, 4, down=False)(torch.zeros(1, 4, 2, 2)).shape == (1, 4, 2, 2)
