"""
Quick start: fit, embed and probe
=================================

The whole idea in twenty lines: pretrain an :class:`~anatcl_sklearn.AnatCLEmbedder` (a 3D
ResNet-18 trained with AnatCL's contrastive loss, guided by age and anatomy) on some
brains, embed other subjects with the frozen encoder, and cross-validate a linear probe
of their age on the embeddings with scikit-learn.

The brains are **synthetic** (:func:`~anatcl_sklearn.datasets.make_synthetic_brains`,
small 24 x 28 x 24 grids), so the example needs no download and runs on a CPU in under a
minute; its numbers are not the paper's. This example has a single mode: what the page
shows is what ``python examples/plot_quickstart.py`` prints (``ANATCL_EXAMPLES_FAST``
changes nothing here).

Next: the paper's protocol -- :func:`~anatcl_sklearn.evaluation.linear_probe`, an inner
grid search on the probe's regularisation, on embeddings computed once -- in the
paper-table examples, and ``GridSearchCV`` tuning the embedder itself inside a
``Pipeline`` in ``plot_grid_search.py``.
"""

# %%
# Pretrain, embed, probe
# ----------------------
import warnings

from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.datasets import make_synthetic_brains

warnings.filterwarnings("ignore", category=GridWarning)  # a small synthetic grid, on purpose

# Images (n_subjects, x, y, z), with each subject's age and FreeSurfer-like anatomy.
train = make_synthetic_brains(32, shape=(24, 28, 24), random_state=0)
test = make_synthetic_brains(60, shape=(24, 28, 24), random_state=1)

encoder = AnatCLEmbedder(method="anatcl", descriptor="global", max_epochs=2, batch_size=16,
                         lr=1e-3, random_state=0, verbose=0)
encoder.fit(train.images, age=train.age, anatomy=train.anatomy)  # pretraining

Z = encoder.transform(test.images)  # the frozen encoder's embeddings
print(f"Embedded {Z.shape[0]} subjects: {Z.shape[1]} features each.")

probe = make_pipeline(StandardScaler(), Ridge(alpha=10.0))
for name, model in [("linear probe", probe), ("mean age (chance)", DummyRegressor())]:
    scores = cross_validate(model, Z, test.age, cv=5, scoring="neg_mean_absolute_error")
    print(f"{name}: age MAE {-scores['test_score'].mean():.1f} years (5-fold CV)")

