"""What G and D are built from: shape fields from the data, capacity fields from the config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to build G and D; shape fields come from the data, capacity fields from the config."""

    channels: int = 1  # image channels (1 or 3); 2 for toy points
    resolution: int = 28  # image side; 0 for toy points
    num_classes: int = 0  # > 0 makes G and D conditional
    latent_dim: int = 100  # size of z
    width_g: int = 64  # DCGAN: ngf; MLP: hidden units of G
    width_d: int = 64  # DCGAN: ndf; MLP: hidden units of D
    depth: int = 3  # MLP only: hidden layers of D (and of G unless depth_g says otherwise)
    depth_g: int | None = None  # MLP only: hidden layers of G; None = depth
    maxout_d: int = 1  # MLP only: pieces of each maxout unit of D (Goodfellow et al. 2013); 1 = LeakyReLU(0.2)
    init_std: float | None = None  # MLP only: weights drawn from N(0, init_std²), biases 0; None = PyTorch's init
    batchnorm_g: bool = True  # batch norm in G's hidden layers
    batchnorm_d: bool = True  # batch norm in D's hidden layers (never on D's input)
    spectral_norm_d: bool = False  # spectral normalisation of every D weight (Miyato et al. 2018)
    dropout_d: float = 0.0  # dropout probability after each D hidden layer
    minibatch_std_d: bool = False  # D's head also sees its features' spread over groups of samples (Karras et al. 2018)
    conditioning_d: str = "projection"  # how D sees labels: "projection" (Miyato & Koyama 2018) or "concat"
    pack: int = 1  # D judges packs of this many samples, concatenated along channels (PacGAN, Lin et al. 2018)
    class_batchnorm_g: bool = (
        False  # conditional G: its batch norms' scale and shift are per class (Dumoulin et al. 2017)
    )
    # Conditional G: the class indices its training data held when some of 0..num_classes-1 were absent (a subset
    # that kept its original labels); () = all of them. Drawing an absent class would show an untrained embedding.
    classes: tuple[int, ...] = ()

    @property
    def drawn_classes(self) -> tuple[int, ...]:
        """The classes a conditional G is asked for when none is named; () for an unconditional G."""
        return self.classes or tuple(range(self.num_classes))
