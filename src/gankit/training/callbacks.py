"""What a training run writes besides checkpoints, each a small object the session calls between steps: sample grids
(with the 2-D Bayes lab's panels) and the diagnostics' watch. Rank 0 alone creates them; they never change the
networks' weights or training state (G is sampled in eval mode), so a run with and without them trains alike."""

from __future__ import annotations

import torch

from gankit.data.streams import Stream, seeded
from gankit.files import append_jsonl
from gankit.images import grid, probability_panel, save_png, side_by_side, to_uint8
from gankit.metrics.toy import bayes_snapshot, mode_metrics
from gankit.models import each_alone, eval_mode
from gankit.training.diagnostics import Finding, Watcher, mean_pairwise_distance, non_finite_finding

TOY_POINTS = 1024  # points in a toy run's sample plot, and in the diagnostics' mode count
DIAGNOSTIC_SAMPLES = 64  # images from the fixed z (and real ones) whose diversity the diagnostics compare


@torch.no_grad()
def draw(G: torch.nn.Module, session, n: int | None = None) -> torch.Tensor:
    """G's samples (float, on G's device) from the run's fixed z — the first n of them — in eval mode."""
    precision = session.state.precision
    z = session.fixed_z[:n].to(precision.device)
    y = session.fixed_y[:n].to(precision.device) if session.fixed_y is not None else None
    with eval_mode(G), precision.autocast():
        return G(z, y).float()


class SampleGrids:
    """samples/step_*.png from the fixed z (EMA weights where there are some): an image grid, one column per class for
    a conditional G; on 2-D data the Bayes lab's two panels. Also TensorBoard's images and weight histograms."""

    def save(self, session) -> None:
        state = session.state
        if session.toy is not None:
            image = self._bayes_lab(session)
        else:
            out = draw(state.G_ema if state.G_ema is not None else state.G, session).cpu()
            image = grid(to_uint8(out), nrow=len(session.spec.drawn_classes) or None)
        save_png(image, session.run_dir / "samples" / f"step_{session.step:07d}.png")
        writer = session.writer()
        writer.add_image("samples", image, session.step)
        for net_name, net in (("G", state.G), ("D", state.D)):  # weight histograms at the samples' cadence
            for name, p in net.named_parameters():
                writer.add_histogram(f"{net_name}/{name}", p.detach().float().cpu(), session.step)

    @torch.no_grad()
    def _bayes_lab(self, session) -> torch.Tensor:
        """The 2-D Bayes view now: σ(D(x)) beside D*(x) = p_data / (p_data + p_g) under real and generated points,
        and the toy metrics (modes, JSD, |σ(D) − D*|) appended to metrics.jsonl. Uses G, the generator D is
        trained against (not its EMA), so that D* is the optimum for the D shown."""
        G, D, cfg, toy = session.state.G, session.state.D, session.cfg, session.toy
        device = session.state.precision.device
        z_fit = torch.randn(2 * TOY_POINTS, cfg.latent_dim, generator=seeded(cfg.seed, Stream.BAYES_FIT))
        real = toy.sample(TOY_POINTS, generator=seeded(cfg.seed, Stream.BAYES_REAL))
        extent = float(toy.means.abs().max()) * 1.25 + 4 * toy.std
        with eval_mode(G, D):
            fake = G(session.fixed_z.to(device)).float().cpu()
            fit = G(z_fit.to(device)).float().cpu()
            snap = bayes_snapshot(toy, fit, fake, real, lambda x: D(*each_alone(D, x.to(device))).float().cpu(), extent)
        points = {"data": (real, (60, 60, 60)), "G(z)": (fake, (0, 150, 60))}
        m = snap["metrics"]
        title = f"D*(x) = p_data/(p_data+p_g); JSD {m['jsd']:.3f}, modes {m['modes_covered']}/{m['modes_total']}"
        image = side_by_side(
            [
                probability_panel(snap["d_field"], points, extent, f"sigma(D(x)), step {session.step}"),
                probability_panel(snap["d_star"], points, extent, title),
            ]
        )
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}
        append_jsonl(
            session.run_dir / "metrics.jsonl", {"step": session.step, "time": round(session.elapsed(), 3), **record}
        )
        for name in ("modes_covered", "high_quality_pct", "jsd", "d_gap"):
            session.writer().add_scalar(f"toy/{name}", m[name], session.step)
        return image


class Diagnostics:
    """The watch for saturation, mode collapse, D memorising and instability (training/diagnostics.py): every log
    interval it judges the interval's values and G's samples from the fixed z; what starts or ends is warned about and
    recorded in diagnostics.jsonl. Its state goes into checkpoints, so a resumed run judges as the uninterrupted one."""

    def __init__(self, session):
        cfg = session.cfg
        if session.toy is not None:
            real = session.toy.sample(TOY_POINTS, generator=seeded(cfg.seed, Stream.DIAGNOSTIC_REAL))
        else:
            x = session.state.batches.x
            pick = torch.randperm(x.shape[0], generator=seeded(cfg.seed, Stream.DIAGNOSTIC_REAL))[:DIAGNOSTIC_SAMPLES]
            real = x[pick.to(x.device)]
        self.watcher = Watcher(
            cfg.saturation_d_fake,
            cfg.collapse_ratio,
            cfg.divergence_factor,
            real_diversity=mean_pairwise_distance(real),
            saturating_loss=cfg.loss == "minimax",
            overfit_r_t=None if session.toy is not None else cfg.overfit_r_t,
        )

    def check(self, session, values: dict[str, float]) -> None:
        n = TOY_POINTS if session.toy is not None else DIAGNOSTIC_SAMPLES  # toy: enough points to count modes
        fake = draw(session.state.G, session, n)
        modes = mode_metrics(session.toy, fake.cpu())["modes_covered"] if session.toy is not None else None
        for finding in self.watcher.check(session.step, values, fake, modes):
            report(session, finding)


def report(session, finding: Finding) -> None:
    """Record a finding in diagnostics.jsonl; warn when a condition starts, say when it clears."""
    record = finding.record()
    append_jsonl(session.run_dir / "diagnostics.jsonl", record)
    if finding.status == "started":
        session.say(f"warning at step {finding.step}: {finding.message}. {record['remedy']}")
    elif finding.status == "cleared":
        session.say(f"step {finding.step}: {finding.message}")


def report_non_finite(session, names: list[str]) -> None:
    """The run stops on NaN or Inf: recorded whether or not the watch is on."""
    report(session, non_finite_finding(session.step, names))
