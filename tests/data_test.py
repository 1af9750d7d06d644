"""The authors' split, bit for bit (SPEC §1.1 fingerprints), and the task labels."""
from absl.testing import absltest, parameterized
import numpy as np

from grokjax import data


class SplitTest(parameterized.TestCase):

  @parameterized.parameters(
      (0, 0.3, "28761709c5dcdb33", 3830, [(18, 34), (10, 83), (55, 28), (25, 51), (63, 65)]),
      (1, 0.3, "cce17fc0b6382ba1", 3830, [(58, 58), (76, 57), (60, 23), (100, 89), (29, 27)]),
      (0, 0.9, "3e3f8b91f8f3473e", 11492, None),
  )
  def test_fingerprints(self, seed, frac, fingerprint, n_train, first):
    mask = data.train_mask(113, frac, seed)
    self.assertEqual(data.split_fingerprint(mask), fingerprint)
    self.assertEqual(mask.sum(), n_train)
    idx = data.train_indices(113, frac, seed)
    if first is not None:
      self.assertEqual([divmod(int(i), 113) for i in idx[:5]], first)
    if (seed, frac) == (0, 0.3):
      self.assertEqual(int(idx.astype(np.int64).sum()), 24_672_933)

  def test_tokens_are_a_major(self):
    t = data.all_tokens(7)
    self.assertEqual(t.shape, (49, 3))
    np.testing.assert_array_equal(t[3 * 7 + 5], [3, 5, 7])

  def test_labels(self):
    a, b = 9, 100
    n = a * 113 + b
    self.assertEqual(data.labels("add", 113)[n], (a + b) % 113)
    self.assertEqual(data.labels("subtract", 113)[n], (a - b) % 113)
    self.assertEqual(data.labels("x2xyy2", 113)[n], (a * a + a * b + b * b) % 113)
    rand = data.labels("rand", 113)
    np.testing.assert_array_equal(rand, data.labels("rand", 113))  # seeded table
    self.assertTrue(0 <= rand.min() and rand.max() < 113)


if __name__ == "__main__":
  absltest.main()
