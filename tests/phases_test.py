"""Phase boundaries from curves (grokjax/phases.py), checked on the authors' mainline curves."""
import os

from absl.testing import absltest
import numpy as np

from grokjax import analysis, phases


class PhasesTest(absltest.TestCase):

  def test_mainline_curves(self):
    # The paper's lines (drawn by eye): 1.4k / 9.4k / 14k (SPEC §4.1).
    with np.load(analysis.reference_path("mainline_notebook_curves.npz")) as z:
      got = phases.detect(z["epochs"], z["test_loss"], z["restricted_loss_all"])
    self.assertEqual(got["memorization_end"], 1400)
    self.assertEqual(got["circuit_formation_end"], 9400)
    self.assertAlmostEqual(got["cleanup_end"], 14000, delta=400)

  def test_shared_copy_is_the_packaged_one(self):
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                          "mainline_notebook_curves.npz")
    if not os.path.exists(shared):
      self.skipTest("no ../shared/reference here")
    with np.load(shared) as a, np.load(analysis.reference_path(
        "mainline_notebook_curves.npz")) as b:
      for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])

  def test_no_grokking(self):
    e = np.arange(0, 5000, 100)
    test = np.concatenate([np.linspace(4.7, 20, 10), np.full(40, 20.0)])
    test[30] = 25.0  # a late spike after memorisation does not matter without a circuit
    restricted = np.full(50, 3.0)
    got = phases.detect(e, test, restricted)
    self.assertEqual(got, dict(memorization_end=3000, circuit_formation_end=None,
                               cleanup_end=None))

  def test_nan_and_unsorted(self):
    e = np.array([300, 0, 100, 200, 400, 500])
    test = np.array([0.5, 4.0, 10.0, np.nan, 1e-6, 1e-6])
    restricted = np.array([1e-3, 4.0, 2.0, np.nan, 1e-6, 1e-6])
    got = phases.detect(e, test, restricted)
    self.assertEqual(got, dict(memorization_end=100, circuit_formation_end=300, cleanup_end=400))

  def test_empty_and_bad_shapes(self):
    self.assertIsNone(phases.detect([], [], None)["memorization_end"])
    with self.assertRaises(ValueError):
      phases.detect([0, 1], [1.0], None)



class SpikesTest(absltest.TestCase):

  def curve(self):
    e = np.arange(0, 10_000, 10)
    loss = np.full(e.shape, 1e-7)
    loss[e < 500] = np.linspace(4.7, 1e-7, int(np.sum(e < 500)))  # memorisation: falling
    loss[e == 3000] = 0.2
    loss[(e > 3000) & (e < 3200)] = 3e-3  # the recovery bump belongs to the same spike
    loss[e == 3300] = 0.5                 # < 500 epochs later: still the same spike
    loss[e == 7000] = 1e-3
    loss[e == 8000] = 5e-7                # > 10x the minimum but below the 1e-6 floor
    return e, loss

  def test_spikes_found_and_merged(self):
    e, loss = self.curve()
    self.assertEqual(phases.loss_spikes(e, loss), [(3000, 0.5), (7000, 1e-3)])
    self.assertEqual(phases.loss_spikes(e, loss, after=5000), [(7000, 1e-3)])
    self.assertEqual(phases.loss_spikes(e, loss, gap=50), [(3000, 0.2), (3300, 0.5),
                                                          (7000, 1e-3)])

  def test_recurring_slingshots_count_separately(self):
    # float32-loss-like: a jump to 1e-2 every 1 200 epochs, each decaying slowly to 2e-6, above
    # the first minimum 1e-7 (an all-time minimum would merge them into one endless spike)
    e = np.arange(0, 8000, 10)
    loss = np.where(e < 1200, 1e-7, 0.0)
    since = (e - 1200) % 1200
    late = e >= 1200
    loss[late] = 1e-2 * np.exp(-since[late] / 1200 * np.log(1e-2 / 2e-6))
    starts = [s for s, _ in phases.loss_spikes(e, loss)]
    self.assertEqual(starts, [1200, 2400, 3600, 4800, 6000, 7200])
    # a slow drift up by 100x over 4 000 epochs is no spike
    drift = 1e-6 * np.exp(e / 4000 * np.log(100))
    self.assertEqual(phases.loss_spikes(e, drift), [])

  def test_smooth_curves_and_nan_have_none(self):
    e = np.arange(0, 5000, 10)
    loss = np.exp(-e / 300.0) + 1e-7
    self.assertEqual(phases.loss_spikes(e, loss), [])
    loss[100] = np.nan  # a diverged point is skipped, not a spike
    self.assertEqual(phases.loss_spikes(e[::-1], loss[::-1]), [])  # order does not matter

  def test_late_spikes_start_at_generalisation(self):
    e, train = self.curve()
    test = np.where(e < 5000, 20.0, 1e-6)
    self.assertEqual(phases.late_spikes(e, train, test), [(7000, 1e-3)])
    # A run that never generalises: spikes after it memorised (train loss < 1e-2).
    self.assertEqual(phases.late_spikes(e, train, np.full(e.shape, 20.0)),
                     [(3000, 0.5), (7000, 1e-3)])
    self.assertEqual(phases.late_spikes(e, np.full(e.shape, 3.0), np.full(e.shape, 3.0)), [])

if __name__ == "__main__":
  absltest.main()
