"""Figures of the reverse-engineered algorithm (paper Figs 3–6, 8–12): Fourier spectra,
attention, neurons, frequency ablations; from each run's final analysis files."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from grokjax.figdata import Workdir
from grokjax.plotting import Skip, _color, _fig, _need_final


def _freq_bars(ax, norms: np.ndarray, key: list[int], title: str) -> None:
  norms = np.asarray(norms, float)
  k = np.arange(1, (len(norms) - 1) // 2 + 1)
  ax.bar(k - 0.2, norms[1::2], width=0.4, color="C0", label="cos k")
  ax.bar(k + 0.2, norms[2::2], width=0.4, color="C1", label="sin k")
  ax.bar([0], norms[:1], width=0.4, color="0.5", label="const")
  top = norms.max()
  for kk in key if len(key) <= 12 else []:
    ax.annotate(str(kk), (kk, max(norms[2 * kk - 1], norms[2 * kk]) + 0.02 * top),
                ha="center", fontsize=7)
  ax.set(xlabel="frequency k", ylabel="norm of Fourier component", title=title)
  ax.title.set_fontsize(10)
  ax.legend(fontsize=7)


def fig_fourier_norms(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 3: Fourier component norms of W_E (over d_model) and of W_L (over neurons)."""
  run, f = _need_final(wd, run, ("W_E_fourier_norms", "W_L_fourier_norms"))
  key = f.get("key_freqs") or []
  fig, ax = _fig(1, 2, w=6.0)
  _freq_bars(ax[0, 0], f["W_E_fourier_norms"], key, "W_E (embedding) in the Fourier basis")
  _freq_bars(ax[0, 1], f["W_L_fourier_norms"], key, "W_L = W_U W_out along the logit axis")
  fig.suptitle(f"Fig 3: run {run} ({wd.label(run)}), key freqs {key}", fontsize=11)
  return fig


def _heat(fig, ax, z, title, xlabel="b", ylabel="a", cmap="viridis", **kw):
  im = ax.imshow(z, origin="lower", cmap=cmap, aspect="equal", interpolation="nearest", **kw)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.title.set_fontsize(10)
  fig.colorbar(im, ax=ax, shrink=0.8)


def _fourier_ticks(ax, p: int, key: list[int], axis: str = "both") -> None:
  """Ticks at the constant and between the cos k / sin k rows of each key frequency k."""
  ticks = [0.0] + [2 * kk - 0.5 for kk in key]
  labels = ["const"] + [f"cos/sin {kk}" for kk in key]
  for which in ("x", "y") if axis == "both" else (axis,):
    getattr(ax, f"set_{which}ticks")(ticks, labels, fontsize=7)
  if axis in ("both", "x"):
    ax.tick_params(axis="x", labelrotation=90)


def fig_attention_neuron_logits(wd: Workdir, run: int | None = None, head: int = 0,
                                neuron: int | None = None) -> Figure:
  """Fig 4: attention `=`→a of one head, one neuron's activation over (a, b) (default: the
  best single-frequency neuron among the stored neurons 0–4; the paper shows neuron 0), and the
  norms of the logits in the 2D Fourier basis."""
  run, z = _need_final(wd, run, ("attn_eq_to_a", "neuron_acts", "logits_fourier_norms_2d"),
                       arrays=True)
  key = (wd.final(run) or {}).get("key_freqs") or []
  if neuron is None:
    fve = (wd.final(run) or {}).get("neuron_fve") or []
    fve = [x if x is not None else -1.0 for x in fve[:len(z["neuron_acts"])]]
    neuron = int(np.argmax(fve)) if fve else 0
  fig, ax = _fig(1, 3, w=4.6, h=4.2)
  _heat(fig, ax[0, 0], z["attn_eq_to_a"][head], f"attention head {head}: `=` → a")
  _heat(fig, ax[0, 1], z["neuron_acts"][neuron], f"MLP neuron {neuron}{_neuron_tag(wd, run, neuron)}")
  norms = z["logits_fourier_norms_2d"]
  _heat(fig, ax[0, 2], norms, "logits: norm of 2D Fourier components",
        xlabel="component over b", ylabel="component over a", cmap="Blues")
  _fourier_ticks(ax[0, 2], norms.shape[0], key)
  fig.suptitle(f"Fig 4: run {run} ({wd.label(run)})", fontsize=11)
  return fig


def _neuron_tag(wd: Workdir, run: int, j: int) -> str:
  f = wd.final(run) or {}
  nf, fve = f.get("neuron_freq"), f.get("neuron_fve")
  if not nf or j >= len(nf) or fve is None or fve[j] is None:
    return ""
  return f" (k={nf[j]}, FVE {fve[j]:.2f})"


def fig_attention_heads(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 9: attention from `=` to a for every head over (a, b)."""
  run, z = _need_final(wd, run, ("attn_eq_to_a",), arrays=True)
  attn = z["attn_eq_to_a"]
  fits = {d["head"]: d for d in (wd.final(run) or {}).get("attention_fits") or []}
  fig, ax = _fig(1, len(attn), w=3.8, h=3.6)
  for h, a in enumerate(ax.flat):
    fit = fits.get(h)
    tag = f" (k={fit['freq']}, FVE {fit['fve']:.2f})" if fit and fit.get("fve") is not None else ""
    _heat(fig, a, attn[h], f"head {h}{tag}")
  fig.suptitle(f"Fig 9: attention `=` → a per head, run {run} ({wd.label(run)})", fontsize=11)
  return fig


def fig_neurons(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 12: activations of MLP neurons 1-4 over (a, b)."""
  run, z = _need_final(wd, run, ("neuron_acts",), arrays=True)
  acts = z["neuron_acts"][1:]
  if not len(acts):
    raise Skip(f"run {run}: neuron_acts holds only neuron 0")
  fig, ax = _fig(1, len(acts), w=3.8, h=3.6)
  for j, a in enumerate(ax.flat, start=1):
    _heat(fig, a, acts[j - 1], f"neuron {j}{_neuron_tag(wd, run, j)}")
  fig.suptitle(f"Fig 12: MLP neuron activations, run {run} ({wd.label(run)})", fontsize=11)
  return fig


def fig_interference(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 8 (App. B): constructive interference. Each key frequency's wave cos(w_k x) is 1 at
  x = 0 (i.e. c = a + b) and comes close to 1 elsewhere; their sum peaks only at x = 0."""
  run, f = _need_final(wd, run, ("key_freqs",))
  key, p = f["key_freqs"], wd.p
  if not key:
    raise Skip(f"run {run}: no key frequencies")
  x = np.arange(-(p // 2), p - p // 2)  # residues mod p, centred on 0
  fig, ax = _fig(1, 2, w=6.0)
  for i, k in enumerate(key):  # stacked with offsets so each wave stays readable
    off = 2.5 * (len(key) - 1 - i)
    ax[0, 0].plot(x, np.cos(2 * np.pi * k * x / p) + off, ".-", color=_color(i), lw=0.6, ms=2.5)
    ax[0, 0].annotate(f"k = {k}", (x[-1] + 1, off), fontsize=7, va="center")
  total = sum(np.cos(2 * np.pi * k * x / p) for k in key)
  ax[0, 1].plot(x, total, "k.-", lw=0.8, ms=3, label="Σ_k cos(w_k x)")
  ax[0, 1].axhline(len(key), color="0.6", ls=":", lw=1, label=f"{len(key)} (all in phase)")
  ax[0, 0].set(xlabel="x = a + b − c (mod p)", yticks=[], title="each key frequency (offset)")
  ax[0, 1].set(xlabel="x = a + b − c (mod p)", ylabel="sum",
               title="their sum: one peak, at x = 0")
  ax[0, 1].legend(fontsize=7, loc="lower right")
  for a in ax.flat:
    a.title.set_fontsize(10)
  fig.suptitle(f"Fig 8: constructive interference of the key frequencies {key}, run {run} "
               f"({wd.label(run)})", fontsize=11)
  return fig


def fig_attention_scores(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 10: each head's attention-score lookup C_h[t] = x_=ᵀ W_Qᵀ W_K W_E[:, t] in the Fourier
  basis: one frequency dominates each head (its single-wave fit is Table 2)."""
  run, z = _need_final(wd, run, ("attn_score_hat",), arrays=True)
  fits = {d["head"]: d for d in (wd.final(run) or {}).get("attention_fits") or []}
  c_hat = np.abs(z["attn_score_hat"])
  fig, ax = _fig(1, len(c_hat), w=3.8, h=3.2)
  for h, a in enumerate(ax.flat):
    fit = fits.get(h) or {}
    k = fit.get("score_freq")
    tag = (f": k={k}, FVE {fit['score_fve']:.2f}"
           if k is not None and fit.get("score_fve") is not None else "")
    _freq_bars(a, c_hat[h], [k] if k else [], f"head {h}{tag}")
    a.set_ylabel("|Fourier coefficient|")
  fig.suptitle(f"Fig 10: attention score C_h over the key token, Fourier basis, run {run} "
               f"({wd.label(run)})", fontsize=11)
  return fig


def fig_ov_circuits(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 11: each head's OV output W_O^h W_V^h (W_E[:, a] + W_pos[0]) in the Fourier basis over
  a (norms over d_model): the heads pass on the key frequencies."""
  run, z = _need_final(wd, run, ("attn_ov_fourier_norms",), arrays=True)
  key = (wd.final(run) or {}).get("key_freqs") or []
  ov = z["attn_ov_fourier_norms"]
  fig, ax = _fig(1, len(ov), w=3.8, h=3.2)
  for h, a in enumerate(ax.flat):
    _freq_bars(a, ov[h], key, f"head {h}")
  fig.suptitle(f"Fig 11: OV circuit output per head in the Fourier basis (key freqs {key}), "
               f"run {run} ({wd.label(run)})", fontsize=11)
  return fig


def _cluster_freq(f: dict, z: dict) -> tuple[int, np.ndarray, str]:
  """A frequency cluster to show: the smallest key frequency with neurons of FVE > 0.85 (the
  paper shows k = 14), else the most common neuron frequency (whatever the FVE)."""
  nf = np.asarray(z.get("neuron_freq", f.get("neuron_freq")))
  fve = np.nan_to_num(np.asarray(f.get("neuron_fve", np.ones_like(nf)), float))
  for k in sorted(f.get("key_freqs") or []):
    member = (nf == k) & (fve > 0.85)
    if member.any():
      return k, np.nonzero(member)[0], "FVE > 0.85"
  vals, counts = np.unique(nf, return_counts=True)
  k = int(vals[np.argmax(counts)])
  return k, np.nonzero(nf == k)[0], "any FVE"


def fig_neuron_fve(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 5: histogram of each neuron's single-frequency FVE; Ŵ_L columns of one cluster."""
  run, f = _need_final(wd, run, ("neuron_fve",))
  _, z = _need_final(wd, run, ("W_L_hat",), arrays=True)
  fve = np.asarray(f["neuron_fve"], float)
  fig, ax = _fig(1, 2, w=5.5, h=4.2)
  a = ax[0, 0]
  a.hist(fve[np.isfinite(fve)], bins=np.linspace(0, 1, 41), color="C0")
  a.axvline(0.85, color="k", ls="--", lw=1)
  a.set(xlabel="fraction of variance explained by one frequency", ylabel="neurons",
        title=f"{np.mean(fve > 0.85):.1%} of {len(fve)} neurons have FVE > 0.85")
  a.title.set_fontsize(10)
  k, cols, rule = _cluster_freq(f, z)
  w = z["W_L_hat"][:, cols]
  lim = float(np.abs(w).max()) or 1.0
  _heat(fig, ax[0, 1], w, f"Ŵ_L columns of the {len(cols)} neurons of frequency {k} ({rule})",
        xlabel="neuron (cluster index)", ylabel="Fourier component (logit axis)", cmap="RdBu_r",
        vmin=-lim, vmax=lim)
  ax[0, 1].set_aspect("auto")
  _fourier_ticks(ax[0, 1], w.shape[0], [k], axis="y")
  fig.suptitle(f"Fig 5: run {run} ({wd.label(run)})", fontsize=11)
  return fig


def fig_freq_ablation(wd: Workdir, run: int | None = None, split: str = "train") -> Figure:
  """Fig 6: loss after removing each frequency k from the logits (per-frequency excluded)."""
  run, f = _need_final(wd, run, ("ablation_per_freq",))
  abl = f["ablation_per_freq"]
  if split not in abl:
    split = next(iter(abl))
  y = np.asarray(abl[split], float)
  k = np.arange(1, len(y) + 1)
  key = f.get("key_freqs") or []
  fig, ax = _fig(1, 1, w=9.0, h=3.8)
  a = ax[0, 0]
  a.bar(k, y, color=["C3" if kk in key else "C0" for kk in k])
  for name, style in ((f"loss_{split}", dict(color="k", ls="--")),
                      (f"restricted_loss_{split}", dict(color="C2", ls=":"))):
    if f.get(name) is not None:
      label = "original loss" if name.startswith("loss") else "only key freqs kept (restricted)"
      a.axhline(f[name], label=label, **style)
  a.set(yscale="log", xlabel="frequency k removed (red: key)", ylabel=f"loss ({split})")
  a.legend(fontsize=8)
  a.set_title(f"Fig 6: per-frequency ablation of the logits, run {run} ({wd.label(run)})",
              fontsize=10)
  return fig
