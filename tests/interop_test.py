"""Loading the authors' PyTorch state dicts (grokjax/interop.py)."""
import os
import shutil
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import analysis, data, interop, model

try:
  import torch
except ImportError:  # optional dependency
  torch = None

WD01 = analysis.reference_path("authors_wd0.1_final_weights.npz")


def _sd():
  with np.load(WD01) as z:
    return {k: z[k] for k in z.files}


class InteropTest(absltest.TestCase):

  def _tmp(self) -> str:
    path = tempfile.mkdtemp()  # (absl's create_tempdir needs parsed flags; pytest has none)
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_load_npz(self):
    params, cfg = interop.load(WD01)
    self.assertEqual((cfg.d_vocab, cfg.d_vocab_out, cfg.n_ctx, cfg.d_model, cfg.num_heads,
                      cfg.d_head, cfg.d_mlp, cfg.num_layers), (114, 114, 3, 128, 4, 32, 512, 1))
    self.assertEqual(set(params), {"W_E", "W_pos", "W_U", "blocks_0"})
    self.assertEqual(set(params["blocks_0"]),
                     {"W_Q", "W_K", "W_V", "W_O", "W_in", "b_in", "W_out", "b_out"})
    # The same shapes as grokjax's own initialisation: the model runs on them as they are.
    ours = model.init_params(cfg, jax.random.key(0))
    jax.tree.map(lambda a, b: self.assertEqual(a.shape, b.shape), ours, params)
    logits = model.last_logits(cfg, params, jnp.asarray(data.all_tokens(113)[:5]))
    self.assertEqual(logits.shape, (5, 114))

  def test_roundtrip_and_mask_dropped(self):
    sd = _sd()
    sd["blocks.0.attn.mask"] = np.tril(np.ones((3, 3), np.float32))
    params, _ = interop.from_state_dict(sd)
    back = interop.to_state_dict(params)
    self.assertEqual(set(back), set(sd) - {"blocks.0.attn.mask"})
    for k, v in back.items():
      np.testing.assert_array_equal(v, sd[k])

  def test_missing_key_is_named(self):
    sd = _sd()
    del sd["blocks.0.mlp.b_in"]
    with self.assertRaisesRegex(interop.WeightsError, r"missing blocks\.0\.mlp\.b_in"):
      interop.from_state_dict(sd)

  def test_unexpected_key_is_named(self):
    sd = _sd()
    sd["blocks.0.ln.w"] = np.ones(3, np.float32)
    with self.assertRaisesRegex(interop.WeightsError, r"unexpected blocks\.0\.ln\.w"):
      interop.from_state_dict(sd)

  def test_bad_shape_is_named(self):
    sd = _sd()
    sd["unembed.W_U"] = sd["unembed.W_U"][:100]
    with self.assertRaisesRegex(interop.WeightsError, r"unembed\.W_U has shape \(100, 114\), "
                                r"expected \(128, 114\)"):
      interop.from_state_dict(sd)
    sd = _sd()
    sd["blocks.0.mlp.W_out"] = sd["blocks.0.mlp.W_out"][:, :500]
    with self.assertRaisesRegex(interop.WeightsError, r"blocks\.0\.mlp\.W_out"):
      interop.from_state_dict(sd)

  def test_bad_files(self):
    tmp = self._tmp()
    with self.assertRaisesRegex(interop.WeightsError, "no such file"):
      interop.load(os.path.join(tmp, "nope.npz"))
    junk = os.path.join(tmp, "junk.npz")
    with open(junk, "w") as f:
      f.write("not a zip")
    with self.assertRaisesRegex(interop.WeightsError, "junk.npz: not a readable"):
      interop.load(junk)
    other = os.path.join(tmp, "other.npz")
    np.savez(other, a=np.zeros(3))
    with self.assertRaisesRegex(interop.WeightsError, r"other\.npz: .*missing embed\.W_E"):
      interop.load(other)

  @absltest.skipIf(torch is None, "torch is not installed (optional)")
  def test_load_pth(self):
    tmp = self._tmp()
    sd = {k: torch.from_numpy(v) for k, v in _sd().items()}
    sd["blocks.0.attn.mask"] = torch.tril(torch.ones(3, 3))
    bare, wrapped = os.path.join(tmp, "bare.pth"), os.path.join(tmp, "run.pth")
    torch.save(sd, bare)
    torch.save({"model": sd, "train_losses": [1.0, 0.5], "epoch": 2}, wrapped)
    want, _ = interop.load(WD01)
    for path in (bare, wrapped):
      got, _ = interop.load(path)
      jax.tree.map(np.testing.assert_array_equal, got, want)


if __name__ == "__main__":
  absltest.main()
