"""MGDA-UB (Sener and Koltun 2018, "Multi-task learning as multi-objective optimization", arXiv 1810.04650).

The shared part follows the min-norm point of the convex hull of the heads' gradients,
d = sum_i a_i g_i with a on the simplex minimising ||d||: a direction that decreases every head's
loss whenever one exists (a Pareto-stationary point otherwise, d = 0). "UB" (upper bound): the g_i
are each head's gradient of the shared representation, the backbone's output (LibMTL's
`rep_grad`), one backward pass per head that stops there; d then flows back through the
backbone once. Each head's own layer gets its own loss's gradient, as in LibMTL. Gradients are
not normalised (LibMTL's `mgda_gn="none"`). A head without labels in a batch takes no part.

The min-norm point is found by Frank-Wolfe on the Gram matrix of the gradients, with the exact
line search of Sener and Koltun's Algorithm 1; for two heads the first step already lands on the
closed form a = clip((g2 - g1).g2 / ||g1 - g2||^2, 0, 1).
"""

from keras import ops

from mtl.weighting.base import REPRESENTATION, Weighting, register

FRANK_WOLFE_STEPS = 20


def min_norm_coefficients(gram, present, steps: int = FRANK_WOLFE_STEPS):
    """The simplex point a over the heads marked `present` (1.0/0.0) minimising a^T gram a."""
    count = ops.maximum(ops.sum(present), 1.0)
    a = present / count
    for _ in range(steps):
        # The vertex along which the norm falls fastest, among the present heads only.
        pull = ops.matmul(gram, a) + (1.0 - present) * 1e30
        vertex = ops.one_hot(ops.argmin(pull), ops.shape(present)[0], dtype=a.dtype)
        # Exact line search on the segment from the current point (vector p) to the vertex (g_t).
        p_p = ops.sum(a * ops.matmul(gram, a))
        p_t = ops.sum(vertex * ops.matmul(gram, a))
        t_t = ops.sum(vertex * ops.matmul(gram, vertex))
        step = ops.clip((p_p - p_t) / ops.maximum(p_p - 2.0 * p_t + t_t, 1e-20), 0.0, 1.0)
        a = (1.0 - step) * a + step * vertex
    return a


@register("mgda")
class MGDA(Weighting):
    """The shared representation's gradient is the min-norm combination of the heads' gradients."""

    needs_gradients = True
    gradients_of = REPRESENTATION

    def combine_gradients(self, losses: dict, present: dict, task_gradients: dict) -> list:
        flat = ops.stack([ops.reshape(task_gradients[head][0], (-1,)) for head in self.heads])
        labelled = ops.stack([ops.convert_to_tensor(present[head], flat.dtype) for head in self.heads])
        coefficients = min_norm_coefficients(ops.matmul(flat, ops.transpose(flat)), labelled)
        stacked = ops.stack([task_gradients[head][0] for head in self.heads])
        return [ops.tensordot(coefficients, stacked, axes=1)]
